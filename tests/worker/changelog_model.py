"""A compacted books changelog partition in memory, for the tests of how
books map to its records (test_book_changelog.py, test_book_parts.py)."""

from __future__ import annotations

from compstream.worker.book_changelog import BookChangelog, is_segment_key
from compstream.worker.core.ports import OutRecord

TOPIC = "w-books-changelog"


class Changelog:
    """A compacted changelog partition: the last value per key."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def copy(self) -> "Changelog":
        out = Changelog()
        out.values = dict(self.values)
        return out

    def apply(self, records: list[OutRecord]) -> None:
        for r in records:
            if r.topic != TOPIC or r.partition != 0:
                raise AssertionError(f"record for {r.topic}:{r.partition}")
            if r.value is None:
                self.values.pop(r.key.decode(), None)
            else:
                self.values[r.key.decode()] = r.value

    def restore(self) -> tuple[BookChangelog, dict[str, bytes]]:
        log = BookChangelog(TOPIC)
        books = {k: v for k, v in self.values.items() if not is_segment_key(k)}
        segments = {k: v for k, v in self.values.items() if is_segment_key(k)}
        return log, log.restore(books, segments)
