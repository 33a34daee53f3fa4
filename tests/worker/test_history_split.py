"""A batch whose history rows exceed the bound is written in pieces, each row
once, also when the store fails between pieces (it used to be an error, and
the worker would have crash-looped on the same batch)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.codec import encode_event
from compstream.history.memory import MemoryHistoryStore
from compstream.history.rows import BATCH_ROWS_MAX, HistoryError, history_batches
from compstream.synth import generate
from compstream.worker.processor import LedgerProcessor, SourceMessage, partition_of
from compstream.worker.sink import HistorySink
from tests.history import data

T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _rows(n: int, rows: list) -> tuple:
    return tuple((rows * (n // len(rows) + 1))[:n])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 10), st.integers(1, 25))
def test_pieces_are_bounded_contiguous_and_complete(n_events, n_postings, n_dead, rows_max):
    events = _rows(n_events, data.event_rows())
    postings = _rows(n_postings, data.posting_rows())
    dead = _rows(n_dead, data.dead_letter_rows())
    pieces = history_batches(events, postings, dead, rows_max)
    total = n_events + n_postings + n_dead
    assert len(pieces) == max(1, -(-total // rows_max))
    assert all(p.row_count() <= rows_max for p in pieces)
    assert all(p.row_count() == rows_max for p in pieces[:-1])  # only the last is short
    assert sum((p.events for p in pieces), ()) == events
    assert sum((p.postings for p in pieces), ()) == postings
    assert sum((p.dead_letters for p in pieces), ()) == dead


@pytest.mark.parametrize("rows_max", [0, -1, BATCH_ROWS_MAX + 1, True])
def test_rows_max_is_checked(rows_max):
    with pytest.raises(HistoryError, match="rows_max"):
        history_batches((), (), (), rows_max)


def _messages(n_usage: int) -> list[SourceMessage]:
    out, offsets = [], {}
    for e in generate(20, n_usage, seed=9):
        topic = "usage" if e.type == "usage" else "grants"
        p = partition_of(e.engineer_id, 2)
        offsets[(topic, p)] = offsets.get((topic, p), -1) + 1
        out.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e),
                                 T + timedelta(milliseconds=len(out))))
    return out


def _run(rows_max: int | None):
    store: dict[str, bytes] = {}
    proc = LedgerProcessor(0, load_book=store.get, partitions=2)
    if rows_max is not None:
        proc.history_rows_max = rows_max
    return proc.process(_messages(300), keys=lambda: list(store), sweep=True)


def test_processor_cuts_its_rows_into_bounded_pieces_without_changing_them():
    whole, cut = _run(None), _run(37)
    assert len(whole.history) == 1
    assert len(cut.history) > 5 and all(p.row_count() <= 37 for p in cut.history)
    for table in ("events", "postings", "dead_letters"):
        assert sum((getattr(p, table) for p in cut.history), ()) == getattr(whole.history[0], table)


class FailingOnce(MemoryHistoryStore):
    """Fails the n-th append once (after the pieces before it were written)."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def append_batch(self, batch, dedup_token):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("store went away")
        super().append_batch(batch, dedup_token)


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_sink_writes_every_piece_once_across_a_failure(fail_at):
    result = _run(37)
    expected = _run(None).history[0]
    store = FailingOnce(fail_at)
    store.migrate()
    sink = HistorySink(store)
    with pytest.raises(ConnectionError):
        sink.write_all(result.history, "batch-1")
    # The retry re-filters every piece: the pieces written before the failure
    # are not written again, the rest are.
    sink.write_all(result.history, "batch-1")
    assert store.event_counts(collapsed=False).rows == len(expected.events)
    assert store.event_counts(collapsed=False).distinct == len(expected.events)
    assert store.posting_counts(collapsed=False).rows == len(expected.postings)
    assert store.posting_counts(collapsed=False).distinct == len(expected.postings)
