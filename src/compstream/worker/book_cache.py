"""Live EngineerBook objects kept between batches, so a batch does not
deserialize every book it touches.

The books table (bytes) stays the truth: an entry is the book object together
with the exact bytes it was serialized to, and `take` hands the object out
only when the table returns those same bytes; any other value (an older
version after a failed batch, a restore, a rebalance, None) means deserialize.
`take` removes the entry, so a book being mutated by a batch is never in the
cache; `put` returns it with its new bytes after the batch. Bounded in entries and
in the bytes of the books it holds (a live book is ~7 times its bytes in
Python objects, measured: a book of 5,000 pending usage events is 575 KB of
bytes and 3.8 MB of objects): least recently put entries are evicted first,
and a book larger than the byte bound on its own is not kept.
"""

from __future__ import annotations

from compstream.config import BOOK_CACHE_BOOKS_MAX, BOOK_CACHE_BYTES_MAX
from compstream.domain.book import EngineerBook

# The defaults (COMPSTREAM_BOOK_CACHE_BOOKS_MAX / _BYTES_MAX): a live book is
# ~5 KB of Python objects on the bench data, so 10,000 books are near 50 MB;
# books with many pending events are large (up to COMPSTREAM_BOOK_BYTES_MAX
# each): 32 MiB of their bytes is ~220 MB of objects. The bench's 10,000
# books are ~20 MB of bytes, all kept. Beyond the bounds, the least recently
# put are evicted and deserialized when next touched.


class BookCache:
    __slots__ = ("max_entries", "bytes_max", "bytes", "_entries", "hits", "misses")

    def __init__(self, max_entries: int = BOOK_CACHE_BOOKS_MAX, bytes_max: int = BOOK_CACHE_BYTES_MAX):
        if max_entries < 0 or bytes_max < 0:
            raise ValueError("max_entries and bytes_max must be >= 0")
        self.max_entries = max_entries
        self.bytes_max = bytes_max
        self.bytes = 0  # of the books held
        self._entries: dict[str, tuple[bytes, EngineerBook]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, engineer: str, data: bytes | None) -> EngineerBook | None:
        """The cached book of `engineer` if it was serialized to exactly
        `data`, else None. Removes the entry in both cases."""
        entry = self._entries.pop(engineer, None)
        if entry is not None:
            self.bytes -= len(entry[0])
            if data is not None and (entry[0] is data or entry[0] == data):
                self.hits += 1
                return entry[1]
        self.misses += 1
        return None

    def put(self, engineer: str, data: bytes, book: EngineerBook) -> None:
        """Keep `book`, whose to_bytes() is `data` and which the caller will
        not mutate until it takes it back."""
        entries = self._entries
        old = entries.pop(engineer, None)
        if old is not None:
            self.bytes -= len(old[0])
        size = len(data)
        if self.max_entries == 0 or size > self.bytes_max:
            return
        while entries and (len(entries) >= self.max_entries or self.bytes + size > self.bytes_max):
            oldest = next(iter(entries))  # dicts keep insertion order: oldest first
            self.bytes -= len(entries.pop(oldest)[0])
        entries[engineer] = (data, book)
        self.bytes += size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
