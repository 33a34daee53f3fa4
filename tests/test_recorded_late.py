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
                             {"ada": [("usage", 0, 4, T0)]}, refused={("usage", 0, 9): "book_full"},
                             through={("usage", 0): 12, ("grants", 0): 3})
    lateness_s = int(LATENESS.total_seconds())
    assert recorded_late.write(tmp_path, kept, lateness_s) == 6
    assert recorded_late.read(tmp_path, lateness_s) == kept
    assert recorded_late.write(tmp_path, RecordedDecisions({}, {}), lateness_s) == 0
    assert recorded_late.read(tmp_path, lateness_s) is None  # nothing kept: no file
    recorded_late.path_of(tmp_path).write_text('{"version": 1, "late": {"ada": [["u5", "noon"]]}, "expected": {}}')
    with pytest.raises(RecordedLateError, match="recorded-late.json: bad decision.*remove it"):
        recorded_late.read(tmp_path, lateness_s)
    recorded_late.path_of(tmp_path).write_text("{")
    with pytest.raises(RecordedLateError, match="recorded-late.json: unreadable"):
        recorded_late.read(tmp_path, lateness_s)
    # A version 1 file (the first build that kept decisions) names no lateness: read as it is.
    recorded_late.path_of(tmp_path).write_text('{"version": 1, "late": {"ada": [["u5", 0]]}, "expected": {}}')
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert recorded_late.read(tmp_path, 60) == RecordedDecisions({("ada", "u5"): (epoch, 0)}, {})


def test_decisions_kept_under_another_lateness_are_refused(tmp_path):
    kept = RecordedDecisions({}, {"ada": [("usage", 0, 4, T0)]})
    recorded_late.write(tmp_path, kept, 6 * 3600)
    with pytest.raises(RecordedLateError, match="kept under COMPSTREAM_LATENESS_S=21600, the worker runs with 3600"):
        recorded_late.read(tmp_path, 3600)


def test_a_caught_up_rebuild_retires_the_file(tmp_path):
    recorded_late.write(tmp_path, RecordedDecisions({}, {"ada": [("usage", 0, 4, T0)]}), 60)
    taken = recorded_late.retire(tmp_path)
    assert taken == tmp_path / recorded_late.TAKEN_NAME and taken.exists()
    assert recorded_late.read(tmp_path, 3600) is None  # a later lateness change no longer depends on it
    assert recorded_late.retire(tmp_path) == taken  # retired before (by the worker): where it is
    recorded_late.write(tmp_path, RecordedDecisions({}, {"ada": [("usage", 0, 5, T0)]}), 60)
    assert not taken.exists(), "a new rebuild's file supersedes the old record"
    taken.unlink(missing_ok=True)
    recorded_late.path_of(tmp_path).unlink()
    assert recorded_late.retire(tmp_path) is None


def test_the_worker_refuses_decisions_kept_under_another_lateness(tmp_path, monkeypatch):
    # Before it reaches for the broker (nothing listens on port 1): a message, no traceback.
    from compstream.config import Settings
    from compstream.worker.run import run_worker

    data_dir = tmp_path / "w"
    recorded_late.write(data_dir, RecordedDecisions({}, {"ada": [("usage", 0, 4, T0)]}), 6 * 3600)
    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("COMPSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("COMPSTREAM_LATENESS_S", "3600")
    monkeypatch.setenv("COMPSTREAM_ENGINE", "transactional")
    with pytest.raises(SystemExit, match="compstream worker: .*recorded-late.json: kept under "
                                         "COMPSTREAM_LATENESS_S=21600, the worker runs with 3600"):
        run_worker(Settings.from_env())
    assert not (data_dir / "worker.pid").exists()


def test_usage_the_stream_dead_lettered_moved_its_stream_time_too():
    # u9 (14h) was refused (book_full: no event row) but moved stream time
    # first; u2 (7h), read after it, is then at risk: 14h - 6h > 7h.
    rows = [_row(_usage("u1", 1), 0), _row(_usage("u2", 7), 5)]
    records = [("h@0", encode_batch(HistoryBatch(events=tuple(rows))))]
    assert recorded_late.collect(records, LATENESS).expected == {}
    moved = recorded_late.collect(records, LATENESS, {("usage", 0): [(3, T0 + timedelta(hours=14))]})
    assert moved is not None and moved.expected == {"ada": [("usage", 0, 5, T0 + timedelta(hours=7))]}
    later = recorded_late.collect(records, LATENESS, {("usage", 0): [(6, T0 + timedelta(hours=14))]})
    assert later is not None and later.expected == {}, "read after it: no matter"
