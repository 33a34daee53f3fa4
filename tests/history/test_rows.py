"""PostingRow is the ledger's Posting as stored: same fields, one definition."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta, timezone

from compstream.domain.balance import Posting
from compstream.history.rows import PostingRow

UTC = timezone.utc


def _posting(**changes) -> Posting:
    base = Posting("alice", 3, "consume", "G1", 5_000, "u-1", datetime(2026, 9, 1, 12, tzinfo=UTC), 7_000,
                   "0" * 64, "a" * 64)
    return dataclasses.replace(base, **changes)


def test_posting_row_fields_are_the_ledger_postings() -> None:
    assert issubclass(PostingRow, Posting)
    assert [f.name for f in dataclasses.fields(PostingRow)] == [f.name for f in dataclasses.fields(Posting)]


def test_from_posting_copies_every_field() -> None:
    posting = _posting()
    row = PostingRow.from_posting(posting)
    assert type(row) is PostingRow
    assert dataclasses.astuple(row) == dataclasses.astuple(posting)
    assert row.key() == ("alice", 3, "a" * 64)


def test_from_posting_normalises_other_zones_naive_times_and_enum_kinds() -> None:
    plus_two = datetime(2026, 9, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    row = PostingRow.from_posting(_posting(event_time=plus_two))
    assert row.event_time == datetime(2026, 9, 1, 12, tzinfo=UTC) and row.event_time.tzinfo is UTC

    class Kind(enum.Enum):
        CONSUME = "consume"

    @dataclasses.dataclass
    class Like:  # "any object with the same attribute names"
        engineer_id: str = "bob"
        seq: int = 1
        kind: Kind = Kind.CONSUME
        grant_id: str | None = None
        amount_nanos: int = 1
        cause_event_id: str = "u-2"
        event_time: datetime = datetime(2026, 9, 1, 12)  # naive = UTC by construction
        available_after_nanos: int = 0
        prev_hash: str = "0" * 64
        hash: str = "b" * 64

    row = PostingRow.from_posting(Like())
    assert row.kind == "consume" and row.event_time == datetime(2026, 9, 1, 12, tzinfo=UTC)
