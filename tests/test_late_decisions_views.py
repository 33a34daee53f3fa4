"""The two views of the late decisions on the history topic: an event's last
row (what the books hold, also after a rebuild judged it again) and its first
row (what the history store keeps, and the statements follow)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from unittest.mock import patch

from compstream.domain.events import Usage
from compstream.history import wire
from compstream.history.rows import EventRow, HistoryBatch
from compstream.replay import late_decisions
from compstream.replay.late_decisions import collect_decisions, collect_late

T = datetime(2026, 10, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def _record(*rows: tuple[str, bool, int]) -> bytes:
    """A history record of event rows: (event id, late, applied seq), all ada's."""
    out = []
    for event_id, late, seq in rows:
        usage = Usage(event_id, "ada", "openai", "gpt-4o", T, 10, 10, 0, 0, 10**6)
        out.append(EventRow.from_event(usage, topic="u", partition=0, offset=seq, ingest_time=T, late=late,
                                       payload="{}", applied_watermark=T + H if late else T - H,
                                       applied_seq=seq))
    return wire.encode_batch(HistoryBatch(events=tuple(out)))


def _records(*records: bytes):
    return [(f"h@{n}", r) for n, r in enumerate(records)]


def test_first_and_last_rows_of_events_judged_again():
    first_run = _record(("u1", True, 1), ("u2", False, 2), ("u3", True, 3))
    rebuild = _record(("u1", False, 1), ("u2", True, 2), ("u3", True, 3))  # u1 on time now, u2 late now
    decisions = collect_decisions(_records(first_run, rebuild))
    assert decisions.first == {"ada": [("u1", T + H), ("u3", T + H)]}
    assert decisions.last == {"ada": [("u2", T + H), ("u3", T + H)]}
    assert decisions.last == collect_late(_records(first_run, rebuild))
    assert decisions.rejudged() == {"ada"}


def test_the_same_decisions_again_are_not_judged_again():
    run = _record(("u1", True, 1), ("u2", False, 2))
    decisions = collect_decisions(_records(run, run))
    assert decisions.first == decisions.last and decisions.rejudged() == set()


def test_past_its_bound_the_first_view_is_unknown_not_guessed():
    with patch.object(late_decisions, "FIRST_SEEN_MAX", 2):
        decisions = collect_decisions(_records(_record(("u1", True, 1), ("u2", False, 2), ("u3", False, 3))))
    assert decisions.first is None
    assert decisions.last == {"ada": [("u1", T + H)]}
