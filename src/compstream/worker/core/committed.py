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
from typing import Callable

# partition -> (stream time, watermark): as the view passes them to balance_body
PartitionTimes = dict[int, tuple[datetime, datetime]]


class CommittedView:
    def __init__(self, partition_of: Callable[[str], int]) -> None:
        self._partition_of = partition_of
        self._lock = threading.Lock()
        self._books: dict[str, bytes] = {}
        self._times: PartitionTimes = {}
        self._staged: dict[str, bytes] = {}

    def stage(self, engineer: str, data: bytes) -> None:
        """A book a step changed; shown once `publish` says it is committed."""
        self._staged[engineer] = data

    def staged(self) -> int:
        return len(self._staged)

    def publish(self, times: PartitionTimes) -> None:
        """The staged books are committed (with these partition times)."""
        staged, self._staged = self._staged, {}
        with self._lock:
            self._books.update(staged)
            self._times = {**self._times, **times}

    def restored(self, books: dict[str, bytes], times: PartitionTimes) -> None:
        """A restored partition's books: read from the committed changelog."""
        with self._lock:
            self._books.update(books)
            self._times = {**self._times, **times}

    def forget(self, partition: int) -> None:
        with self._lock:
            for engineer in [e for e in self._books if self._partition_of(e) == partition]:
                del self._books[engineer]
            self._times = {p: t for p, t in self._times.items() if p != partition}
        self._staged = {e: d for e, d in self._staged.items() if self._partition_of(e) != partition}

    def read(self, engineer: str) -> tuple[bytes | None, tuple[datetime, datetime] | None]:
        """(the committed book or None, its partition's (stream time, watermark) or None)."""
        with self._lock:
            return self._books.get(engineer), self._times.get(self._partition_of(engineer))

    def __len__(self) -> int:
        return len(self._books)
