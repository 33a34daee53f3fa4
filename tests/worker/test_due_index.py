"""The sweep's index of due books: each rule the sweep relies on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from compstream.worker import due_index
from compstream.worker.due_index import DueIndex

T = datetime(2026, 10, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def test_a_book_comes_up_once_its_due_time_is_before_the_watermark():
    index = DueIndex()
    index.update("ada", 0, T + 2 * H, None)
    index.update("bob", 0, T + 5 * H, None)
    index.update("cy", 1, T, None)  # another partition
    assert index.take(0, T + 2 * H, T) == set()  # due is "before the watermark", not at it
    assert index.take(0, T + 3 * H, T) == {"ada"}
    assert index.take(0, T + 3 * H, T) == set()  # taken: once


def test_a_changed_due_time_leaves_its_old_entry_stale():
    index = DueIndex()
    index.update("ada", 0, T + 2 * H)
    index.update("ada", 0, T + 8 * H)  # her first pending event was finalized elsewhere in the batch
    assert index.take(0, T + 3 * H, T) == set()
    assert index.take(0, T + 9 * H, T) == {"ada"}


def test_a_scheduled_event_comes_up_when_stream_time_reaches_it():
    index = DueIndex()
    index.update("ada", 0, None, T + 4 * H)
    assert index.take(0, T, T + 3 * H) == set()
    assert index.take(0, T, T + 4 * H) == {"ada"}  # at it: the balance then includes it


def test_a_taken_book_comes_up_again_while_its_times_stay_the_same():
    """A closed lot left in a book's expiry heap keeps its due time; a book
    taken and then skipped (touched by the batch, nothing republished) still owes its scheduled balance."""
    index = DueIndex()
    index.update("ada", 0, T + H, T + 2 * H)
    assert index.take(0, T + 3 * H, T + 3 * H) == {"ada"}
    index.update("ada", 0, T + H)  # same due, scheduled kept
    assert index.take(0, T + 3 * H, T) == {"ada"}
    index.update("ada", 0, T + 5 * H)
    assert index.take(0, T + 3 * H, T + 3 * H) == {"ada"}  # by its scheduled time


def test_put_back_books_come_first_next_time():
    index = DueIndex()
    index.update("ada", 0, T)
    index.update("bob", 0, T)
    assert index.take(0, T + H, T) == {"ada", "bob"}
    index.put_back(0, ["bob"])
    assert index.take(0, T, T) == {"bob"}


def test_forgotten_books_are_unknown_and_their_entries_stale():
    index = DueIndex()
    for name in ("ada", "bob"):
        index.update(name, 0, T + H)
    assert index.unknown(["ada", "bob"]) == []
    index.forget(["ada"])
    assert index.unknown(["ada", "bob"]) == ["ada"]
    assert index.take(0, T + 2 * H, T) == {"bob"}
    index.drop_partition(0)
    index.update("bob", 0, T + H)
    assert index.take(0, T + 2 * H, T) == {"bob"}


def test_stale_entries_are_bounded(monkeypatch):
    monkeypatch.setattr(due_index, "STALE_ENTRIES_MAX", 10)
    index = DueIndex()
    for i in range(1_000):
        index.update("ada", 0, T + i * timedelta(seconds=1))
    assert index.entries(0) <= len(index) + 10 + 1
    assert index.take(0, T + 2_000 * timedelta(seconds=1), T) == {"ada"}
