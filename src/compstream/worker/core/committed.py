"""What the web view may show: the books and partition times as of the last
checkpoint an engine made durable, never the step in between.

`LedgerCore.step` changes the working books before the engine writes its
checkpoint; a transaction can still abort (and its balances never appear on
the balance topic), and a Faust checkpoint is durable only once its last
wave is delivered. A view read from the working books could show a balance
the balance topic never had, or have before it. So the core stages each
step's books here, and the engine publishes them once the checkpoint is
committed: the web view is then never ahead of the balance topic. (An
engine whose checkpoint fails throws the whole core away, staged books with
it, and restores a new one from the changelog.)

The engine's thread writes, the web threads read: one lock, held for the
publish of one checkpoint's books (those it touched) and for one read.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Callable, Iterable, TypeVar

from compstream.worker.leaderboards.view import Boards

T = TypeVar("T")

# partition -> (stream time, watermark): as the view passes them to balance_body
PartitionTimes = dict[int, tuple[datetime, datetime]]


class CommittedView:
    def __init__(self, partition_of: Callable[[str], int]) -> None:
        self._partition_of = partition_of
        self._lock = threading.Lock()
        self._books: dict[str, bytes] = {}
        self._times: PartitionTimes = {}
        self._staged: dict[str, bytes] = {}
        # The leaderboards the merge published (its owner only), as on the topic.
        self._boards = Boards()
        self._staged_boards: dict[str, bytes | None] = {}  # None: a tombstone

    def stage(self, engineer: str, data: bytes) -> None:
        """A book a step changed; shown once `publish` says it is committed."""
        self._staged[engineer] = data

    def stage_board(self, key: bytes | None, value: bytes | None) -> None:
        """A board the merge published in a step (None: its tombstone)."""
        if key is None:
            raise ValueError("a leaderboard record without its board key")
        self._staged_boards[key.decode("utf-8")] = value

    def staged(self) -> int:
        return len(self._staged) + len(self._staged_boards)

    def publish(self, times: PartitionTimes) -> None:
        """The staged books are committed (with these partition times)."""
        staged, self._staged = self._staged, {}
        boards, self._staged_boards = self._staged_boards, {}
        with self._lock:
            self._books.update(staged)
            self._times = {**self._times, **times}
            for key, value in boards.items():
                self._boards.put(key, value)

    def restored(self, books: dict[str, bytes], times: PartitionTimes) -> None:
        """A restored partition's books: read from the committed changelog."""
        with self._lock:
            self._books.update(books)
            self._times = {**self._times, **times}

    def forget(self, partition: int, engineers: Iterable[str]) -> None:
        """A revoked partition and its engineers (the core's books of it:
        every book shown or staged is one of them)."""
        with self._lock:
            for engineer in engineers:
                self._books.pop(engineer, None)
                self._staged.pop(engineer, None)
            self._times = {p: t for p, t in self._times.items() if p != partition}

    def restored_boards(self, boards: Iterable[tuple[bytes, bytes]]) -> None:
        """The merge was restored: every board it has published."""
        fresh = Boards()
        for key, value in boards:
            fresh.put(key.decode("utf-8"), value)
        with self._lock:
            self._boards = fresh

    def forget_boards(self) -> None:
        self._staged_boards = {}
        with self._lock:
            self._boards = Boards()

    def read_boards(self, read: Callable[[Boards], T]) -> T:
        """`read(boards)` under the lock: several lookups see one checkpoint."""
        with self._lock:
            return read(self._boards)

    def read(self, engineer: str) -> tuple[bytes | None, tuple[datetime, datetime] | None]:
        """(the committed book or None, its partition's (stream time, watermark) or None)."""
        with self._lock:
            return self._books.get(engineer), self._times.get(self._partition_of(engineer))
