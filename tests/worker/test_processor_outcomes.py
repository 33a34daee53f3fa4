"""BatchResult.not_applied names exactly the messages the ledger did not
count (event-id duplicates, conflicts, dead letters): the leaderboard feed
skips them, so a republished event is not counted twice on the boards."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from compstream.codec import decode_record, encode_event
from compstream.domain.events import GrantIssued, Usage
from compstream.synth import generate
from compstream.worker.processor import LedgerProcessor, SourceMessage, partition_of
from support.messages import record_time

T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _msg(e, offset: int, key: bytes | None = None) -> SourceMessage:
    topic = "usage" if e.type == "usage" else "grants"
    return SourceMessage(topic, partition_of(e.engineer_id, 1), offset,
                         key if key is not None else e.engineer_id.encode(), encode_event(e),
                         record_time(e, T + timedelta(milliseconds=offset)))


def test_not_applied_is_exactly_duplicates_conflicts_and_dead_letters():
    events = list(generate(3, 40, seed=4))
    usage = [e for e in events if type(e) is Usage]
    msgs = [_msg(e, i) for i, e in enumerate(events)]
    n = len(msgs)
    dup = _msg(usage[3], n)  # same event, new offset (republished)
    conflict = _msg(dataclasses.replace(usage[5], cost_nanos=(usage[5].cost_nanos or 0) + 7), n + 1)
    garbage = SourceMessage("usage", 0, n + 2, b"eng-00000", b"\x00garbage", T)
    wrong_key = _msg(usage[7], n + 3, key=b"someone-else")
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=1)
    first = proc.process(msgs, sweep=False)
    assert first.not_applied == frozenset()
    for engineer, (data, _p) in first.books.items():
        store[engineer] = data
    second = proc.process([dup, conflict, garbage, wrong_key], sweep=False)
    assert second.not_applied == {("usage", 0, n), ("usage", 0, n + 1), ("usage", 0, n + 2),
                                  ("usage", 0, n + 3)}
    assert second.duplicates == 1 and len(second.dead_letters) == 3


def test_usage_older_than_the_dedupe_horizon_is_a_dead_letter_not_an_alert():
    """A usage event whose id the book no longer remembers (dated more than
    SEEN_USAGE_DAYS behind the watermark) could be a duplicate: the batch
    dead-letters it with stage too_old; events_applied does not move."""
    from compstream.codec import decode_record
    from compstream.domain.book import SEEN_USAGE_DAYS

    eng = "eng-7"
    old = Usage("u-old", eng, "openai", "gpt-4o", T, 10, 5, 0, 0, 1_000)
    now = Usage("u-now", eng, "openai", "gpt-4o", T + timedelta(days=SEEN_USAGE_DAYS + 2), 10, 5, 0, 0, 2_000)
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=1)
    for offset, e in enumerate([old, now]):
        res = proc.process([_msg(e, offset)], sweep=False)
        for engineer, (data, _p) in res.books.items():
            store[engineer] = data
    again = proc.process([_msg(old, 2)], sweep=False)
    assert again.not_applied == {("usage", 0, 2)} and again.applied == 0
    [(key, value)] = again.dead_letters
    record = decode_record(value)[1]
    assert key == eng.encode() and record["stage"] == "too_old" and "u-old" in record["reason"]
    assert again.alerts == [] and again.balances == []
    assert [r.stage for b in again.history for r in b.dead_letters] == ["too_old"]
    balance = decode_record(res.balances[-1][1])[1]
    assert balance["events_applied"] == 2 and balance["usage_cost_nanos"] == 3_000


def test_books_are_kept_under_the_byte_budget_or_named_in_an_error(caplog):
    """Past `book_bytes_max` a book forgets its oldest days of usage ids
    before it is written (here every event still fits); when even that
    cannot fit (a limit below the book's own state: its usage is refused,
    test_book_full.py), the log names the book."""
    from compstream.domain.book import EngineerBook

    eng = "eng-9"
    days = [Usage(f"u{d}-{i}", eng, "openai", "gpt-4o", T + timedelta(days=d, minutes=i), 10, 5, 0, 0, 100)
            for d in range(6) for i in range(200)]
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=1)
    proc.book_bytes_max = 12_000
    for i in range(0, len(days), 300):
        res = proc.process([_msg(e, i + j) for j, e in enumerate(days[i:i + 300])], sweep=False)
        for engineer, (data, _p) in res.books.items():
            store[engineer] = data
    book = EngineerBook.from_bytes(store[eng])
    assert len(store[eng]) <= 12_000 and book.taken == len(days) and book.seen_from_day > 0
    proc.book_bytes_max = 100
    with caplog.at_level("ERROR", logger="compstream.worker.processor"):
        res = proc.process([_msg(Usage("late-add", eng, "openai", "gpt-4o", T + timedelta(days=6), 1, 1, 0, 0, 1),
                                 len(days))], sweep=False)
    assert len(res.books[eng][0]) > 100
    assert any(eng in r.getMessage() and "over its 100-byte budget" in r.getMessage() for r in caplog.records)


def _backlog_batches(lagging_after):
    """Batch 1: A's grant and usage (the grant becomes final, the usage at
    T+1h stays pending). Batch 2: B's usage 30 h later and a grant at T+2h that
    was the grants partition's backlog before the batch; held back by it, the
    watermark is T+1h (lateness 1 h), which does not finalize A's usage."""
    from compstream.domain.events import GrantIssued

    grant_a = GrantIssued("g-a", "A", "GA", 10_000, T - timedelta(hours=2), None, "monthly")
    use_a = Usage("u-a", "A", "openai", "gpt-4o", T + timedelta(hours=1), 10, 5, 0, 0, 700)
    grant_b = GrantIssued("g-b", "B", "GB", 10_000, T + timedelta(hours=2), None, "monthly")
    use_b = Usage("u-b", "B", "openai", "gpt-4o", T + timedelta(hours=30), 10, 5, 0, 0, 300)
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=1)
    first = proc.process([_msg(grant_a, 0), _msg(use_a, 0)], keys=lambda: list(store), lagging=())
    store.update({e: data for e, (data, _p) in first.books.items()})
    return proc.process([_msg(grant_b, 1), _msg(use_b, 1)], keys=lambda: list(store),
                        lagging=[("grants", 0)], lagging_after=lagging_after)


def test_a_backlog_the_batch_finished_does_not_hold_its_sweep_back():
    """A's usage is final once the watermark (B's usage - 1 h) passes it. While
    the grants partition counts as behind, the watermark is held at its last
    grant; the sweep of the batch that read that backlog to its end must not
    be (the gap test_inputs worked around with a second tick)."""
    held = _backlog_batches(lagging_after=None)  # behind as before the batch: the old behaviour
    assert "A" not in held.books and held.swept == 0
    done = _backlog_batches(lagging_after=())
    assert "A" in done.books and done.swept == 1
    assert [p.cause_event_id for b in done.history for p in b.postings if p.engineer_id == "A"] == ["u-a"]
    assert "A" in {e for e, _ in done.balances}


def test_a_total_past_64_bits_is_a_report_not_a_batch_that_fails_at_every_retry():
    """Ten grants of 10**18 nanos for one engineer: the tenth would take the
    issued total past an Avro long; encoding the balance raised
    OverflowError, so the batch failed again at every retry."""
    from compstream.history.memory import MemoryHistoryStore
    from compstream.history.verify import verify_store

    grants = [GrantIssued(f"g{i}", "ada", f"G{i}", 10**18, T + timedelta(minutes=i), None, "bonus")
              for i in range(10)]
    tick = Usage("u-1", "ada", "openai", "gpt-4o", T + timedelta(days=1), 1, 1, 0, 0, 5)  # finalizes them
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(3600, load_book=store.get, partitions=1)
    result = proc.process([_msg(e, i) for i, e in enumerate(grants + [tick])])
    (engineer, value), = result.balances
    balance = decode_record(value)[1]
    assert (engineer, balance["issued_nanos"], balance["events_applied"]) == ("ada", 9 * 10**18, 11)
    reports = [decode_record(v)[1] for _e, v in result.alerts]
    assert [(r["kind"], r["cause_event_id"]) for r in reports if r["kind"] == "report:overflow"] == [
        ("report:overflow", "g9")]
    history = MemoryHistoryStore()
    history.migrate()
    for n, batch in enumerate(result.history):
        history.append_batch(batch, f"b{n}")
    assert [p.grant_id for p in history.postings_for("ada") if p.kind == "issue"] == [f"G{i}" for i in range(9)]
    assert verify_store(history, replay=True).findings == []
