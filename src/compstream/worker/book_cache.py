"""Live EngineerBook objects kept between batches, so a batch does not
deserialize every book it touches.

The books table (bytes) stays the truth: an entry is the book object together
with the exact bytes it was serialized to, and `take` hands the object out
only when the table returns those same bytes; any other value (an older
version after a failed batch, a restore, a rebalance, None) means deserialize.
`take` removes the entry, so a book being mutated by a batch is never in the
cache; `put` returns it with its new bytes after the batch. Bounded: least
recently put entries are evicted first.
"""

from __future__ import annotations

from compstream.domain.book import EngineerBook

# A live book is ~5 KB of Python objects (measured on the bench data), so
# this bounds the cache near 50 MB; beyond it, the least recent deserialize.
BOOK_CACHE_MAX = 10_000


class BookCache:
    __slots__ = ("max_entries", "_entries", "hits", "misses")

    def __init__(self, max_entries: int = BOOK_CACHE_MAX):
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: dict[str, tuple[bytes, EngineerBook]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, engineer: str, data: bytes | None) -> EngineerBook | None:
        """The cached book of `engineer` if it was serialized to exactly
        `data`, else None. Removes the entry in both cases."""
        entry = self._entries.pop(engineer, None)
        if entry is not None and data is not None and (entry[0] is data or entry[0] == data):
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, engineer: str, data: bytes, book: EngineerBook) -> None:
        """Keep `book`, whose to_bytes() is `data` and which the caller will
        not mutate until it takes it back."""
        entries = self._entries
        entries.pop(engineer, None)
        if self.max_entries == 0:
            return
        while len(entries) >= self.max_entries:
            del entries[next(iter(entries))]  # dicts keep insertion order: oldest first
        entries[engineer] = (data, book)

    def clear(self) -> None:
        self._entries.clear()
