"""Realistic history for report tests: synthetic events plus hand-made edge
cases, run through the real worker decision logic (LedgerProcessor) and the
real HistorySink, then every book finalized, exactly as production stores it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from compstream import synth
from compstream.codec import encode_event
from compstream.domain.book import EngineerBook
from compstream.domain.events import (
    CashCompensation,
    GrantIssued,
    GrantRevoked,
    LeaderboardPrivacy,
    TeamAssigned,
    Usage,
    event_sort_key,
)
from compstream.history.rows import HistoryBatch, PostingRow
from compstream.worker.processor import LedgerProcessor, SourceMessage, partition_of
from compstream.worker.sink import HistorySink

UTC = timezone.utc
PARTITIONS = 2
GRANTS, USAGE = "compstream.grants", "compstream.usage"
OPTED_OUT = ("eng-00004", "eng-00009", "eng-00020")
TINY_TEAM = ("eng-00001", "eng-00002", "eng-00006")  # 3 engineers: must be hidden


def t(month: int, day: int, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def _extras() -> list:
    out: list = []
    # September history, so October's to-date differs from October alone;
    # the September grant expires inside October (breakage in the period).
    for n, eng in enumerate(("eng-00000", "eng-00003", "eng-00007", "eng-00004")):
        out.append(GrantIssued(f"sep-g-{eng}", eng, f"{eng}-sep", 80 * 10**9, t(9, 1), t(10, 10), "allowance"))
        for i in range(4):
            out.append(Usage(f"sep-u-{eng}-{i}", eng, "openai", "gpt-4o", t(9, 5 + 5 * i, n),
                             90_000, 4_000, 1_000, 0, 3 * 10**9 + i))
    # Overdraft: a small grant and heavy usage.
    out.append(GrantIssued("zed-g", "zed", "zed-small", 5 * 10**9, t(10, 2), t(11, 15), "allowance"))
    for i in range(6):
        out.append(Usage(f"zed-u{i}", "zed", "anthropic", "claude-sonnet-4-20250514", t(10, 3 + i, 12),
                         200_000, 10_000, 0, 500, 2 * 10**9))
    # Corrections: a refund that returns to a grant, and one larger than the
    # overdraft plus consumption left (partly unapplied).
    out.append(Usage("zed-fix", "zed", "anthropic", "claude-sonnet-4-20250514", t(10, 20), -1000, -10, 0, 0,
                     -3 * 10**9, corrects_event_id="zed-u1"))
    out.append(Usage("sep-fix", "eng-00007", "openai", "gpt-4o", t(10, 21), -90_000, -4_000, 0, 0,
                     -10**9, corrects_event_id="sep-u-eng-00007-0"))
    out.append(GrantRevoked("rev-3b", "eng-00003", "eng-00003-bonus", t(10, 25)))
    # A refund with no open grant and no overdraft left: booked unapplied.
    out.append(GrantIssued("yan-g", "yan", "yan-g", 4 * 10**9, t(10, 1), None, "bonus"))
    out.append(Usage("yan-u", "yan", "openai", "gpt-4o", t(10, 2), 10_000, 1_000, 0, 0, 3 * 10**9))
    out.append(GrantRevoked("yan-r", "yan", "yan-g", t(10, 4)))
    out.append(Usage("yan-fix", "yan", "openai", "gpt-4o", t(10, 6), -5_000, -500, 0, 0, -2 * 10**9,
                     corrects_event_id="yan-u"))
    # November activity must not leak into October.
    for n, eng in enumerate(("eng-00000", "eng-00010", "zed")):
        out.append(GrantIssued(f"nov-g-{eng}", eng, f"{eng}-nov", 60 * 10**9, t(11, 1), t(12, 1), "allowance"))
        out.append(Usage(f"nov-u-{eng}", eng, "google", "gemini-2.5-pro", t(11, 3, n), 5_000, 500, 0, 0, 10**8))
    # HR: privacy, a small team, cash pay (one raise in the period, one later).
    for eng in OPTED_OUT:
        out.append(LeaderboardPrivacy(f"priv-{eng}", eng, True, t(10, 5)))
    out.append(LeaderboardPrivacy("priv-back-eng-00008", "eng-00008", True, t(10, 3)))
    out.append(LeaderboardPrivacy("priv-back2-eng-00008", "eng-00008", False, t(10, 9)))
    for eng in TINY_TEAM:
        out.append(TeamAssigned(f"tiny-{eng}", eng, "team-tiny", t(10, 12)))
    out.append(TeamAssigned("team-zed", "zed", "team-1", t(10, 2)))
    out.append(CashCompensation("cash-0a", "eng-00000", 180_000 * 10**9, t(1, 1)))
    out.append(CashCompensation("cash-0b", "eng-00000", 240_000 * 10**9 + 7, t(10, 15)))
    out.append(CashCompensation("cash-0c", "eng-00000", 999_000 * 10**9, t(12, 1)))
    out.append(CashCompensation("cash-zed", "zed", 120_000 * 10**9, t(6, 1)))
    return out


def events() -> list:
    base = list(synth.generate(36, 900, seed=11, teams=5, with_hr=True))
    return base + _extras()


def _order(event) -> tuple:
    if event.type in ("grant_issued", "grant_revoked", "engineer_offboarded", "usage"):
        return event_sort_key(event)
    return (event.event_time, -1, event.event_id)  # HR events move no money


def build(store, evs: list | None = None, chunk: int = 400) -> list:
    """Stream `evs` (default: events()) into `store`; returns the events."""
    evs = events() if evs is None else evs
    books: dict[str, bytes] = {}
    processor = LedgerProcessor(0, load_book=books.get, partitions=PARTITIONS)
    sink = HistorySink(store)
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for n, event in enumerate(sorted(evs, key=_order)):
        topic = USAGE if event.type == "usage" else GRANTS
        partition = partition_of(event.engineer_id, PARTITIONS)
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        messages.append(SourceMessage(topic, partition, offset, event.engineer_id.encode(), encode_event(event),
                                      t(12, 1) + timedelta(milliseconds=n)))
    for i in range(0, len(messages), chunk):
        part = messages[i:i + chunk]
        result = processor.process(part, keys=lambda: list(books), sweep=True)
        sink.write_all(result.history, f"test:{i}")
        books.update({eng: data for eng, (data, _p) in result.books.items()})
    # Quiet end of stream: finalize every book (all pending events and expiries).
    finals = []
    for eng in sorted(books):
        finals.extend(PostingRow.from_posting(p) for p in EngineerBook.from_bytes(books[eng]).finalize_all().postings)
    sink.write(HistoryBatch(postings=tuple(finals)), "test:finalize")
    return evs
