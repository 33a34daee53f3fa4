"""Which stored books have something to do before a watermark, found without
visiting every book.

A book is due when its first pending event or its next expiry is older than
its partition's watermark (there is something to finalize), or when its last
balance left out an event dated at or before the partition's stream time (a
scheduled HR event whose time has come). The sweep advances exactly those
books. Visiting every stored book for this cost ~7 ms a batch at 10,000
books, whatever the batch's size: a fixed cost that made small (live)
batches dear (bench/profile_notes.md, 2026-12-07). Here each partition keeps two min-heaps of (time, engineer);
an entry whose engineer's time has changed since is stale and dropped when
it comes up, so a change is one push and nothing is searched.

A book this index never computed (restored from the changelog, or moved to
another worker and back) counts as due: another worker may have given it an
earlier pending event, and a sweep that trusted an old time would skip it
while its watermark row claimed its postings final.
"""

from __future__ import annotations

import heapq
from datetime import datetime
from typing import Collection, Iterable

# A heap is rebuilt from the current times when it holds this many more
# entries than books (stale entries of times that changed): its bound.
STALE_ENTRIES_MAX = 4_096

_MISSING = object()
KEEP = object()  # update(): leave the scheduled time as it is


class DueIndex:
    def __init__(self) -> None:
        # engineer -> earliest time its book has something to finalize; None = nothing.
        self.due: dict[str, datetime | None] = {}
        # engineer -> time of the first pending event its last balance left
        # out (dated after stream time then); None = nothing left out.
        self.scheduled: dict[str, datetime | None] = {}
        self._partition: dict[str, int] = {}
        self._due_heaps: dict[int, list[tuple[datetime, str]]] = {}
        self._scheduled_heaps: dict[int, list[tuple[datetime, str]]] = {}
        # Taken from the heaps but not swept yet (a sweep stopped at its row bound).
        self._carry: dict[int, set[str]] = {}
        # Taken by a sweep and not updated since: their next times are pushed
        # even if equal to the last (a closed lot left in the expiry heap keeps
        # a book's due time; the book must come up again while it does).
        self._taken: set[str] = set()

    def __len__(self) -> int:
        return len(self.due)

    def update(self, engineer: str, partition: int, due: datetime | None,
               scheduled: datetime | None | object = KEEP) -> None:
        """A book's times after a batch (`scheduled` only where its balance
        was published again)."""
        taken = engineer in self._taken
        if taken:
            self._taken.discard(engineer)
        if taken or self.due.get(engineer, _MISSING) != due:  # else its entry is in the heap
            self.due[engineer] = due
            if due is not None:
                self._push(self._due_heaps, partition, due, engineer)
        if scheduled is KEEP:
            kept = self.scheduled.get(engineer)
            if taken and kept is not None:  # its entry was taken and nothing republished: still owed
                self._push(self._scheduled_heaps, partition, kept, engineer)
        elif taken or self.scheduled.get(engineer, _MISSING) != scheduled:
            self.scheduled[engineer] = scheduled  # type: ignore[assignment]
            if scheduled is not None:
                self._push(self._scheduled_heaps, partition, scheduled, engineer)  # type: ignore[arg-type]
        self._partition[engineer] = partition

    def entries(self, partition: int) -> int:
        """Heap entries held for the partition, stale ones included."""
        return len(self._due_heaps.get(partition, ())) + len(self._scheduled_heaps.get(partition, ()))

    def forget(self, engineers: Iterable[str]) -> None:
        """Books this worker no longer holds, or holds as restored: unknown again."""
        for engineer in engineers:
            self.due.pop(engineer, None)
            self.scheduled.pop(engineer, None)
            self._partition.pop(engineer, None)
            self._taken.discard(engineer)

    def drop_partition(self, partition: int) -> None:
        self._due_heaps.pop(partition, None)
        self._scheduled_heaps.pop(partition, None)
        self._carry.pop(partition, None)

    def unknown(self, stored: Collection[str]) -> list[str]:
        """The stored books whose times this index has not computed."""
        if len(stored) <= len(self.due):  # every computed book is stored (forget keeps it so)
            return []
        due = self.due
        return [engineer for engineer in stored if engineer not in due]

    def take(self, partition: int, watermark: datetime, stream_time: datetime) -> set[str]:
        """The partition's known books due at `watermark` / `stream_time`,
        taken out of the index: the sweep advances them (or puts them back)."""
        found = self._carry.pop(partition, set())
        due, heap = self.due, self._due_heaps.get(partition)
        while heap and heap[0][0] < watermark:
            at, engineer = heapq.heappop(heap)
            if due.get(engineer, _MISSING) == at:
                found.add(engineer)
                self._taken.add(engineer)
        scheduled, heap = self.scheduled, self._scheduled_heaps.get(partition)
        while heap and heap[0][0] <= stream_time:
            at, engineer = heapq.heappop(heap)
            if scheduled.get(engineer, _MISSING) == at:
                found.add(engineer)
                self._taken.add(engineer)
        return found

    def put_back(self, partition: int, engineers: Iterable[str]) -> None:
        """Taken but not swept: the next sweep of the partition takes them first."""
        self._carry.setdefault(partition, set()).update(engineers)

    def _push(self, heaps: dict[int, list[tuple[datetime, str]]], partition: int, at: datetime,
              engineer: str) -> None:
        heap = heaps.setdefault(partition, [])
        heapq.heappush(heap, (at, engineer))
        if len(heap) > len(self.due) + STALE_ENTRIES_MAX:
            times = self.due if heaps is self._due_heaps else self.scheduled
            part = self._partition
            heap[:] = [(t, e) for e, t in times.items() if t is not None and part.get(e) == partition]
            heapq.heapify(heap)
