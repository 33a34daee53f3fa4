"""worker/recorded_late.py: which of the stream's decisions a rebuild keeps,
and the file the worker reads them from."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compstream.domain.events import GrantIssued, Usage
from compstream.history.rows import EventRow, HistoryBatch
from compstream.history.wire import encode_batch
from compstream.worker import recorded_late
from compstream.worker.recorded_late import RecordedDecisions, RecordedLateError

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
LATENESS = timedelta(hours=6)


def _row(event, offset: int, late_under: datetime | None = None, seq: int = 1) -> EventRow:
    topic = "usage" if event.type == "usage" else "grants"
    return EventRow.from_event(event, topic=topic, partition=0, offset=offset, ingest_time=T0,
                               late=late_under is not None, applied_watermark=late_under, applied_seq=seq)


def _usage(event_id: str, hours: float, engineer: str = "ada") -> Usage:
    return Usage(event_id, engineer, "openai", "m", T0 + timedelta(hours=hours), 1, 1, 0, 0, 10**8)


def test_what_a_rebuild_keeps():
    grant = GrantIssued("g", "ada", "G", 10**9, T0, None, "allowance")
    rows = [
        _row(grant, 0),
        _row(_usage("u1", 1), 0),
        _row(_usage("u2", 20), 1),  # stream time 20h
        _row(_usage("u3", 13), 2),  # on time live, but 13h < 20h - 6h: a batch cut could make it late
        _row(_usage("u4", 14, "ken"), 3),  # 14h or later is safe: no watermark passes 20h - 6h here
        _row(_usage("u5", 2), 4, late_under=T0 + timedelta(hours=13), seq=5),  # late under 13h
        _row(_usage("u5", 2), 4, late_under=T0 + timedelta(hours=9), seq=9),  # a later row of it: not the first
        _row(_usage("u6", 1), 5, late_under=T0 + timedelta(hours=14), seq=6),  # late under 14h: safe too
    ]
    records = [("h@0", encode_batch(HistoryBatch(events=tuple(rows[:3])))),
               ("h@1", encode_batch(HistoryBatch(events=tuple(rows[3:]))))]
    kept = recorded_late.collect(records, LATENESS)
    assert kept is not None
    assert kept.late == {("ada", "u5"): (T0 + timedelta(hours=13), 0), ("ada", "u6"): (T0 + timedelta(hours=14), 1)}
    assert kept.expected == {
        "ada": [("grants", 0, 0, T0),  # HR: read in any order relative to usage
                ("usage", 0, 2, T0 + timedelta(hours=13)),
                ("usage", 0, 4, T0 + timedelta(hours=13))],  # late: bound by its watermark
    }


def test_the_file_round_trip_and_its_errors(tmp_path):
    kept = RecordedDecisions({("ada", "u5"): (T0, 0), ("ada", "u6"): (T0, 1)},
                             {"ada": [("usage", 0, 4, T0)]})
    assert recorded_late.write(tmp_path, kept) == 3
    assert recorded_late.read(tmp_path) == kept
    assert recorded_late.write(tmp_path, RecordedDecisions({}, {})) == 0
    assert recorded_late.read(tmp_path) is None  # nothing kept: no file
    recorded_late.path_of(tmp_path).write_text('{"version": 1, "late": {"ada": [["u5", "noon"]]}, "expected": {}}')
    with pytest.raises(RecordedLateError, match="recorded-late.json: bad decision.*remove it"):
        recorded_late.read(tmp_path)
    recorded_late.path_of(tmp_path).write_text("{")
    with pytest.raises(RecordedLateError, match="recorded-late.json: unreadable"):
        recorded_late.read(tmp_path)
