"""Usage dated too far ahead of its Kafka record is refused (stage `future`).

Usage moves its partition's stream time. Before this rule one usage event
with a wrong year finalized every engineer of the partition up to that date:
their grants expired, their pending usage became final and everything that
came after counted as late. Usage cannot be published before it happened,
so the worker compares the event time with the record's timestamp (both in
the record: a rebuild from the source topics reaches the same verdicts)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compstream.codec import decode_record, encode_event
from compstream.config import USAGE_AHEAD_S_MAX, Settings
from compstream.domain.events import GrantIssued, Usage
from compstream.domain.replay import fold_engineer
from compstream.worker.processor import EPOCH, FUTURE, USAGE_AHEAD_S_LIMITS, LedgerProcessor, SourceMessage

T = datetime(2026, 11, 1, tzinfo=timezone.utc)
LATENESS_S = 6 * 3600
AHEAD = timedelta(seconds=USAGE_AHEAD_S_MAX)


def _msg(e, offset: int, at: datetime) -> SourceMessage:
    topic = "usage" if e.type == "usage" else "grants"
    return SourceMessage(topic, 0, offset, e.engineer_id.encode(), encode_event(e), at)


def _usage(event_id: str, engineer: str, at: datetime, cost: int = 7 * 10**6) -> Usage:
    return Usage(event_id, engineer, "openai", "gpt-4o", at, 100, 10, 0, 0, cost)


def _run(proc: LedgerProcessor, store: dict[str, bytes], msgs: list[SourceMessage]):
    result = proc.process(msgs)
    for engineer, (data, _p) in result.books.items():
        store[engineer] = data
    return result


def _balances(result) -> dict[str, dict]:
    return {engineer: decode_record(value)[1] for engineer, value in result.balances}


def test_usage_with_a_wrong_year_is_a_dead_letter_and_moves_no_one_s_clock():
    grant = GrantIssued("g-ada", "ada", "G", 10**9, T - timedelta(days=1), T + timedelta(days=30), "monthly")
    ada = _usage("u-ada", "ada", T)
    typo = _usage("u-bob", "bob", T.replace(year=2029))
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    result = _run(proc, store, [_msg(grant, 0, T), _msg(ada, 0, T + timedelta(minutes=5)),
                                _msg(typo, 1, T + timedelta(minutes=5))])

    (key, value), = result.dead_letters
    dead = decode_record(value)[1]
    assert (key, dead["stage"], dead["raw"], dead["source_offset"]) == (b"bob", FUTURE, encode_event(typo), 1)
    assert "usage dated 2029-11-01T00:00:00.000000Z, 1,096.0 days ahead of its Kafka record" in dead["reason"]
    assert [r.stage for b in result.history for r in b.dead_letters] == [FUTURE]
    assert ("usage", 0, 1) in result.not_applied
    assert [decode_record(v)[1]["kind"] for _e, v in result.alerts] == ["report:future"]
    # Stream time is ada's usage, not 2029: nothing of ada's is final yet.
    assert proc.watermark(0) == T - timedelta(seconds=LATENESS_S)
    balances = _balances(result)
    assert set(balances) == {"ada"}  # bob has nothing applied
    want = fold_engineer("ada", [grant, ada], T).balance().to_dict()
    for name in ("issued_nanos", "consumed_nanos", "expired_nanos", "available_nanos"):
        assert balances["ada"][name] == want[name], name
    assert balances["ada"]["expired_nanos"] == 0 and balances["ada"]["consumed_nanos"] == 7 * 10**6

    # The usage after it is on time, not late.
    later = _run(proc, store, [_msg(_usage("u-ada-2", "ada", T + timedelta(hours=1)), 2, T + timedelta(hours=1))])
    assert [r.late for b in later.history for r in b.events] == [False]


def test_the_bound_is_inclusive_and_set_per_worker():
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    on_the_bound = _usage("u-1", "ada", T + AHEAD)
    past_it = _usage("u-2", "ada", T + AHEAD + timedelta(microseconds=1))
    result = _run(proc, store, [_msg(on_the_bound, 0, T), _msg(past_it, 1, T)])
    assert [r.event_id for b in result.history for r in b.events] == ["u-1"]
    assert [decode_record(v)[1]["stage"] for _k, v in result.dead_letters] == [FUTURE]

    strict = LedgerProcessor(LATENESS_S, load_book={}.get, partitions=1, usage_ahead_s_max=0)
    result = strict.process([_msg(_usage("u-3", "ada", T), 0, T),
                             _msg(_usage("u-4", "ada", T + timedelta(microseconds=1)), 1, T)])
    assert [r.event_id for b in result.history for r in b.events] == ["u-3"]
    assert len(result.dead_letters) == 1

    for bad in (USAGE_AHEAD_S_LIMITS[0] - 1, USAGE_AHEAD_S_LIMITS[1] + 1):
        with pytest.raises(ValueError, match="usage_ahead_s_max"):
            LedgerProcessor(LATENESS_S, load_book={}.get, partitions=1, usage_ahead_s_max=bad)


def test_a_record_without_a_timestamp_and_hr_events_dated_ahead_are_not_refused():
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    next_year = GrantIssued("g-next", "ada", "G", 10**9, T + timedelta(days=365), None, "monthly")
    untimed = _usage("u-1", "ada", T)  # Kafka's "no timestamp" (-1) reaches the core as the epoch
    result = _run(proc, store, [_msg(next_year, 0, T), _msg(untimed, 0, EPOCH)])
    assert result.dead_letters == []
    assert sorted(r.event_id for b in result.history for r in b.events) == ["g-next", "u-1"]


def test_a_refused_event_published_again_once_its_time_has_come_is_applied_once():
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(LATENESS_S, load_book=store.get, partitions=1)
    early = _usage("u-1", "ada", T + timedelta(days=2))
    first = _run(proc, store, [_msg(early, 0, T)])
    assert len(first.dead_letters) == 1 and first.balances == []
    # A redrive (the same bytes, a new record) after its time: taken in, not
    # a duplicate (a refused event is remembered nowhere).
    again = _run(proc, store, [_msg(early, 1, T + timedelta(days=2))])
    assert again.dead_letters == [] and again.duplicates == 0
    assert [r.event_id for b in again.history for r in b.events] == ["u-1"]
    assert _balances(again)["ada"]["events_applied"] == 1


def test_the_bound_comes_from_the_environment(monkeypatch):
    assert Settings.from_env().usage_ahead_s_max == USAGE_AHEAD_S_MAX == 900
    monkeypatch.setenv("COMPSTREAM_USAGE_AHEAD_S_MAX", "60")
    assert Settings.from_env().usage_ahead_s_max == 60
