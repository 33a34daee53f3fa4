"""Stream time (and so the watermark) follows provider usage only.

HR events are often dated ahead: next month's grant, a scheduled offboarding
or team move. If their effective time advanced stream time, every usage event
of today would fall behind the watermark and count as late (ledger) or too
late for its windows (leaderboards)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from compstream.codec import decode_record, encode_event
from compstream.domain.events import GrantIssued, TeamAssigned, Usage
from compstream.domain.leaderboard import LeaderboardConfig
from compstream.worker.leaderboards.partition import PartitionStage, engineer_key
from compstream.worker.processor import LedgerProcessor, SourceMessage
from support.messages import record_time

T = datetime(2026, 11, 1, tzinfo=timezone.utc)
ENG = "eng-00001"
LATENESS_S = 6 * 3600


def _msg(e, offset: int, topic: str | None = None) -> SourceMessage:
    topic = topic or ("usage" if e.type == "usage" else "grants")
    return SourceMessage(topic, 0, offset, e.engineer_id.encode(), encode_event(e), record_time(e, T))


def _usage(i: int, at: datetime) -> Usage:
    return Usage(f"u-{i}", ENG, "anthropic", "claude-sonnet-4-5", at, 1000, 100, 0, 0, 5 * 10**6)


def _alert_kinds(result) -> list[str]:
    return [decode_record(v)[1]["kind"] for _e, v in result.alerts]


def test_future_dated_grant_does_not_make_todays_usage_late():
    now_grant = GrantIssued("g-now", ENG, "G-now", 10**9, T, None, "monthly")
    next_month = GrantIssued("g-next", ENG, "G-next", 10**9, T + timedelta(days=30), None, "monthly")
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    first = proc.process([_msg(now_grant, 0), _msg(next_month, 1)], sweep=False)
    for engineer, (data, _p) in first.books.items():
        store[engineer] = data
    usage = [_usage(i, T + timedelta(hours=1 + i)) for i in range(3)]
    second = proc.process([_msg(u, i) for i, u in enumerate(usage)], sweep=False)
    rows = [r for b in second.history for r in b.events]
    assert [r.event_id for r in rows] == ["u-0", "u-1", "u-2"]
    assert [r.late for r in rows] == [False, False, False]
    assert "report:late" not in _alert_kinds(second)
    assert proc.watermark(0) == T + timedelta(hours=3) - timedelta(seconds=LATENESS_S)
    # The published balance is as of stream time: next month's grant is not spendable yet.
    (engineer, value), = second.balances
    balance = decode_record(value)[1]
    # events_applied counts every event taken in, the scheduled grant too.
    assert (engineer, balance["issued_nanos"], balance["events_applied"]) == (ENG, 10**9, 5)
    assert (balance["as_of"], balance["cause_event_id"]) == (T + timedelta(hours=3), "u-2")
    for engineer, (data, _p) in second.books.items():
        store[engineer] = data
    third = proc.process([_msg(_usage(7, T + timedelta(days=30, hours=1)), 3)], sweep=False)
    balance = decode_record(third.balances[0][1])[1]
    assert (balance["issued_nanos"], balance["events_applied"]) == (2 * 10**9, 6)


def test_usage_time_still_finalizes_a_future_grant_once_it_passes():
    grant = GrantIssued("g-next", ENG, "G-next", 10**9, T + timedelta(days=30), None, "monthly")
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    first = proc.process([_msg(grant, 0)], sweep=False)
    assert [p for b in first.history for p in b.postings] == []  # pending: not final yet
    for engineer, (data, _p) in first.books.items():
        store[engineer] = data
    later = _usage(9, T + timedelta(days=31))
    second = proc.process([_msg(later, 0)], sweep=False)
    kinds = [p.kind for b in second.history for p in b.postings]
    assert kinds[0] == "issue"  # the grant's issue posting became final
    assert [r.late for b in second.history for r in b.events] == [False]


def test_future_team_move_does_not_push_usage_out_of_its_windows():
    cfg = LeaderboardConfig(k=5, lateness=timedelta(hours=6))
    stage = PartitionStage(cfg, {"u": "usage", "g": "grants"})
    stage.restore(0, [], 1)
    team_now = TeamAssigned("t-0", ENG, "team-a", T)
    move = TeamAssigned("t-1", ENG, "team-b", T + timedelta(days=40))
    out = stage.process([_msg(team_now, 0, "g"), _msg(move, 1, "g")], 2)
    usage = _usage(0, T + timedelta(hours=1))
    out = stage.process([_msg(usage, 0, "u")], 3)
    assert out.too_late == 0 and out.applied == 1
    windows = json.loads(out.records[0][engineer_key(0, ENG)])["windows"]
    assert windows  # counted in its day/week/month/all windows


def test_a_quiet_engineers_balance_is_republished_when_stream_time_reaches_its_grant():
    """Nobody waits for the engineer's next event: the batch in which another
    engineer's usage moves stream time past the scheduled grant republishes."""
    other = "eng-00002"
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)

    def run(messages):
        result = proc.process(messages, keys=lambda: list(store), sweep=True)
        for engineer, (data, _p) in result.books.items():
            store[engineer] = data
        return {e: decode_record(v)[1] for e, v in result.balances}

    first = run([_msg(GrantIssued("g-next", ENG, "G-next", 10**9, T + timedelta(days=30), None, "monthly"), 0),
                 _msg(_usage(0, T + timedelta(hours=1)), 0)])
    assert first[ENG]["issued_nanos"] == 0
    before = run([_msg(Usage("o-1", other, "openai", "gpt-4o", T + timedelta(days=29), 10, 1, 0, 0, 100), 1)])
    # (the finalizing sweep may republish ENG here: its usage became final)
    assert before.get(ENG, first[ENG])["issued_nanos"] == 0
    after = run([_msg(Usage("o-2", other, "openai", "gpt-4o", T + timedelta(days=30), 10, 1, 0, 0, 100), 2)])
    assert after[ENG]["issued_nanos"] == 10**9 and after[ENG]["as_of"] == T + timedelta(days=30)
    quiet = run([_msg(Usage("o-3", other, "openai", "gpt-4o", T + timedelta(days=30, hours=1), 10, 1, 0, 0, 100), 3)])
    assert ENG not in quiet  # published once, not on every batch


def test_the_sweep_finalizes_a_quiet_book_exactly_up_to_the_partition_watermark():
    from compstream.domain.book import EngineerBook

    store: dict[str, bytes] = {}

    def keep(result) -> None:
        for engineer, (data, _p) in result.books.items():
            store[engineer] = data

    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    grant = GrantIssued("g", ENG, "G", 10**9, T, None, "monthly")
    keep(proc.process([_msg(grant, 0), _msg(_usage(0, T + timedelta(hours=1)), 1),
                       _msg(_usage(1, T + timedelta(hours=2)), 2)], keys=lambda: list(store)))
    # ENG stays quiet; another engineer's usage moves the watermark between ENG's two events.
    other = Usage("v-0", "eng-00002", "anthropic", "claude-sonnet-4-5",
                  T + timedelta(hours=1, minutes=30, seconds=LATENESS_S), 1, 1, 0, 0, 1)
    second = proc.process([_msg(other, 3)], keys=lambda: list(store))
    assert proc.watermark(0) == T + timedelta(hours=1, minutes=30)
    assert second.swept == 1
    book = EngineerBook.from_bytes(second.books[ENG][0])
    assert book.watermark == proc.watermark(0)
    assert [e.event_id for _key, e in book.pending] == ["u-1"]  # u-0 final, u-1 not yet
    assert ENG in dict(second.balances)
