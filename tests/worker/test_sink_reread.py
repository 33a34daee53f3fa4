"""The history topic's loader re-reads, after a crash, records it wrote but
did not commit, cut into different batches (other dedup tokens); a new owner
of a partition re-records the watermark it restored, and a restored
leaderboard merge may publish a closed window again. Every table keeps each
row once: no double-load by the sink's filter, whatever the cuts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.history.memory import MemoryHistoryStore
from compstream.history.rows import HistoryBatch, LeaderboardWindowRow, WatermarkRow
from compstream.worker.history_loader import merge
from compstream.worker.sink import HistorySink

T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _records(n: int, repeats: list[bool]) -> list[HistoryBatch]:
    """n history records over two partitions; a record may repeat its
    partition's last watermark (a new owner) and the last closed window."""
    out, final = [], {0: T, 1: T}
    for i in range(n):
        p = i % 2
        marks = []
        if repeats[i % len(repeats)]:
            marks.append(WatermarkRow(p, final[p], final[p] + timedelta(minutes=i)))
        final[p] += timedelta(hours=1)
        marks.append(WatermarkRow(p, final[p], final[p] + timedelta(minutes=i)))
        start = T + timedelta(hours=i // 3)  # a window closes over several records
        windows = [LeaderboardWindowRow("hour", start, "cost", rank, f"s{rank}", 10 - rank, 1, start, i % 2)
                   for rank in (1, 2)]
        out.append(HistoryBatch(watermarks=tuple(marks), leaderboard_windows=tuple(windows)))
    return out


def _load(sink: HistorySink, records: list[HistoryBatch], cuts: list[int], tag: str) -> None:
    edges = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    for a, b in zip(edges, edges[1:], strict=False):
        sink.write_all(merge(records[a:b]), f"{tag}:{a}-{b}")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 24), st.lists(st.booleans(), min_size=1, max_size=5),
       st.integers(0, 24), st.lists(st.integers(0, 30), max_size=4), st.lists(st.integers(0, 30), max_size=4),
       st.integers(0, 24))
def test_every_row_is_stored_once_across_rereads(n, repeats, crashed_at, cuts, cuts_again, committed):
    records = _records(n, repeats)
    crashed_at, committed = min(crashed_at, n), min(committed, crashed_at, n)
    store = MemoryHistoryStore()
    store.migrate()
    _load(HistorySink(store), records[:crashed_at], cuts, "first")
    # Restarted: fresh caches, from the last committed record, cut otherwise.
    _load(HistorySink(store), records[committed:], cuts_again, "again")
    for table in ("watermarks", "leaderboard_windows"):
        rows = store.tables[table]
        want = {row.key() for record in records for row in getattr(record, table)}
        assert len(rows) == len({row.key() for row in rows}), table
        assert {row.key() for row in rows} == want, table


def test_the_watermark_filter_can_drop_rows():
    """The filter is not vacuous: the same records loaded twice by fresh
    sinks under other tokens add nothing the second time."""
    records = _records(6, [True])
    store = MemoryHistoryStore()
    store.migrate()
    _load(HistorySink(store), records, [], "one")
    before = {t: len(store.tables[t]) for t in ("watermarks", "leaderboard_windows")}
    # Per partition 3 records, each moving the watermark an hour past T, plus
    # the first record's repeat of T itself: 4 keys; the other repeats are dropped.
    assert before == {"watermarks": 8, "leaderboard_windows": 2 * 2 * 2}  # 2 windows x 2 ranks x 2 revisions
    _load(HistorySink(store), records, [3], "two")
    assert {t: len(store.tables[t]) for t in before} == before
