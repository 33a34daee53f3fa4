"""Test fixtures: real events, and postings produced by the real ledger fold,
so the chain under test is exactly what production would store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from compstream.domain.events import GrantIssued, GrantRevoked, Usage
from compstream.domain.replay import replay_detailed
from compstream.history.rows import DeadLetterRow, EventRow, HistoryBatch, LeaderboardWindowRow, PostingRow

UTC = timezone.utc
GRANTS, USAGE = "compstream.grants", "compstream.usage"
INGEST = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def t(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def events() -> list:
    """Two engineers over Sept-Oct 2026: grants, usage, an expiry, an overdraft, a revoke."""
    out = []
    for n, eng in enumerate(("alice", "bob")):
        out.append(GrantIssued(f"{eng}-g1", eng, f"{eng}-G1", 5_000_000_000, t(9, 1), t(10, 15), "monthly"))
        out.append(GrantIssued(f"{eng}-g2", eng, f"{eng}-G2", 2_000_000_000, t(9, 2), None, "bonus"))
        for i in range(6):
            out.append(Usage(
                f"{eng}-u{i}", eng, ("anthropic", "openai")[i % 2], ("claude-x", "gpt-y", "claude-z")[i % 3],
                t(9 + i // 3, 3 + 4 * i, n), 1000 * (i + 1), 500, 10, 0,
                None if i == 4 else 400_000_000 * (i + 1),
                unpriced_reason="unknown model" if i == 4 else None,
                price_version=None if i == 4 else "2026-09",
            ))
        out.append(GrantRevoked(f"{eng}-r2", eng, f"{eng}-G2", t(10, 28)))
    return out


def event_rows() -> list[EventRow]:
    rows, offsets = [], {GRANTS: 0, USAGE: 0}
    for event in events():
        topic = USAGE if event.type == "usage" else GRANTS
        rows.append(EventRow.from_event(
            event, topic=topic, partition=0, offset=offsets[topic],
            ingest_time=INGEST + timedelta(seconds=len(rows)), late=event.event_id.endswith("u5"),
        ))
        offsets[topic] += 1
    return rows


def posting_rows() -> list[PostingRow]:
    result = replay_detailed(events())
    return [PostingRow.from_posting(p) for eng in sorted(result.postings) for p in result.postings[eng]]


def dead_letter_rows() -> list[DeadLetterRow]:
    return [
        DeadLetterRow(USAGE, 1, 7, b"\xff\xfenot json", "not JSON", "decode", t(10, 2)),
        DeadLetterRow(USAGE, 1, 9, b'{"type":"usage"}', "event_id: missing", "validate", t(10, 3)),
        DeadLetterRow(GRANTS, 0, 3, b'{"type":"grant_issued"}', "conflict", "ledger", t(10, 4)),
    ]


def window_rows() -> list[LeaderboardWindowRow]:
    return [
        LeaderboardWindowRow("daily", t(9, 3), "engineer", rank, eng, value, tokens, t(9, 4))
        for rank, (eng, value, tokens) in enumerate((("bob", 900, 20_000), ("alice", 400, 10_000)), start=1)
    ]


def full_batch() -> HistoryBatch:
    return HistoryBatch(
        events=tuple(event_rows()), postings=tuple(posting_rows()),
        dead_letters=tuple(dead_letter_rows()), leaderboard_windows=tuple(window_rows()),
    )
