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

A step ends by sealing what it staged, with its partition times, as one
generation; `publish` shows the oldest sealed generation. An engine that
commits a checkpoint while the next is stepped (the transactional engine's
commit in flight, core/loop.py) so has two sealed at most, and shows each
once its own commit is done.

The engine's thread writes, the web threads read: one lock, held for the
publish of one checkpoint's books (those it touched) and for one read.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from typing import Callable, Iterable, TypeVar

from compstream.worker.leaderboards.view import Boards

T = TypeVar("T")

# Sealed generations waiting for their commit: the one in flight and the one
# just stepped.
SEALED_MAX = 2

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
        # (books, boards, times) of each step not yet published, oldest first
        self._sealed: deque[tuple[dict[str, bytes], dict[str, bytes | None], PartitionTimes]] = deque()

    def stage(self, engineer: str, data: bytes) -> None:
        """A book a step changed; shown once `publish` says it is committed."""
        self._staged[engineer] = data

    def stage_board(self, key: bytes | None, value: bytes | None) -> None:
        """A board the merge published in a step (None: its tombstone)."""
        if key is None:
            raise ValueError("a leaderboard record without its board key")
        self._staged_boards[key.decode("utf-8")] = value

    def staged(self) -> int:
        """Books and boards stepped and not published yet (sealed or not)."""
        return len(self._staged) + len(self._staged_boards) + sum(
            len(books) + len(boards) for books, boards, _times in self._sealed)

    def seal(self, times: PartitionTimes) -> None:
        """A step ended: what it staged, with its partition times, is one
        checkpoint's generation, published by the `publish` of its commit."""
        if len(self._sealed) >= SEALED_MAX:
            raise RuntimeError(f"{len(self._sealed)} checkpoints sealed and not published: "
                               "an engine stepped past a commit it did not wait for")
        self._sealed.append((self._staged, self._staged_boards, times))
        self._staged, self._staged_boards = {}, {}

    def publish(self) -> None:
        """The oldest sealed checkpoint is committed: show it."""
        if not self._sealed:
            raise RuntimeError("publish without a sealed checkpoint")
        staged, boards, times = self._sealed.popleft()
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
                for books, _boards, _times in self._sealed:
                    books.pop(engineer, None)
            self._times = {p: t for p, t in self._times.items() if p != partition}
            for _books, _boards, times in self._sealed:
                times.pop(partition, None)

    def restored_boards(self, boards: Iterable[tuple[bytes, bytes]]) -> None:
        """The merge was restored: every board it has published."""
        fresh = Boards()
        for key, value in boards:
            fresh.put(key.decode("utf-8"), value)
        with self._lock:
            self._boards = fresh

    def forget_boards(self) -> None:
        self._staged_boards = {}
        for _books, boards, _times in self._sealed:
            boards.clear()
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
