"""`compstream replay` through typer's CliRunner (only the replay command is
registered, so other command groups cannot break these tests)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from compstream.cli.replay_cmd import register
from compstream.domain.events import event_to_json
from compstream.domain.replay import replay
from compstream.replay_file import read_jsonl

ROOT = "tests/domain"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app)
    return app


def _events():
    import sys
    sys.path.insert(0, ROOT)
    from ledger_support import grant, revoke, usage
    return [grant("g1", "A", 100, 0, 10), usage("u1", 1, 30), usage("u2", 11, 5),
            grant("g2", "B", 50, 0, eng="e2"), revoke("r1", "B", 2, eng="e2"),
            usage("u3", 3, 5, eng="e2")]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_good_file_any_order_and_as_of(app, tmp_path):
    events = _events()
    a = _write(tmp_path / "a.jsonl", [event_to_json(e) for e in reversed(events[:3])])
    b = _write(tmp_path / "b.jsonl", [event_to_json(e) for e in events[3:]] + [""])
    out = tmp_path / "balances.json"
    r = CliRunner().invoke(app, ["replay", "--input", a, "--input", b, "--as-of",
                                 "2026-01-01T05:00:00Z", "--output", str(out), "--strict"])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["as_of"] == "2026-01-01T05:00:00.000000Z"
    assert doc["engineers"]["e1"]["consumed_nanos"] == 30
    assert doc["engineers"]["e1"]["remaining_nanos"] == 70
    assert doc["engineers"]["e2"] == replay(events)["e2"].to_dict()
    assert set(doc) == {"as_of", "engineers"}

    r = CliRunner().invoke(app, ["replay", "-i", a, "-i", b, "-o", str(out)])
    doc = json.loads(out.read_text())
    assert doc["as_of"] is None and doc["engineers"]["e1"]["expired_nanos"] == 70
    assert doc["engineers"]["e1"]["overdraft_nanos"] == 5


def test_bad_lines_reported_with_line_numbers(app, tmp_path):
    events = _events()
    lines = [event_to_json(e) for e in events]
    lines.insert(1, "{not json")
    lines.insert(3, json.dumps({"type": "usage", "event_id": "x", "engineer_id": "e1"}))
    lines.append(json.dumps({**json.loads(lines[2]), "cost_nanos": 999}))  # conflict on u1
    src = _write(tmp_path / "log.jsonl", lines)
    out = tmp_path / "o.json"
    errors = tmp_path / "errors.jsonl"
    r = CliRunner().invoke(app, ["replay", "-i", src, "-o", str(out), "--errors", str(errors)])
    assert r.exit_code == 0, r.output
    text = r.output
    assert f"{src}:2: invalid JSON" in text
    assert f"{src}:4: provider: missing" in text
    assert f"{src}:9:" in text and "conflict" in text
    probs = [json.loads(x) for x in errors.read_text().splitlines()]
    assert [(p["kind"], p.get("line")) for p in probs if p["kind"] != "revoke_unknown_grant"] == [
        ("bad line", 2), ("bad line", 4), ("conflict", 9)]
    assert json.loads(out.read_text())["engineers"]["e1"]["consumed_nanos"] == 30

    r = CliRunner().invoke(app, ["replay", "-i", src, "-o", str(tmp_path / "s.json"),
                                 "--strict"])
    assert r.exit_code == 1
    assert not (tmp_path / "s.json").exists()


def test_missing_file_and_bad_as_of(app, tmp_path):
    r = CliRunner().invoke(app, ["replay", "-i", str(tmp_path / "nope.jsonl")])
    assert r.exit_code == 2
    src = _write(tmp_path / "x.jsonl", [])
    r = CliRunner().invoke(app, ["replay", "-i", src, "--as-of", "yesterday"])
    assert r.exit_code == 2


def test_read_jsonl_reports_invalid_utf8(tmp_path):
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b'\xff\xfe{"a":1}\n')
    bad = []
    assert list(read_jsonl([p], bad.append)) == []
    assert bad[0].line == 1 and "UTF-8" in bad[0].reason


def test_replay_leaves_no_objects_frozen(app, tmp_path):
    """The file replay freezes what it has read (GC cost) and must undo it."""
    import gc

    src = _write(tmp_path / "a.jsonl", [event_to_json(e) for e in _events()])
    out = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["replay", "-i", src, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert gc.get_freeze_count() == 0
    assert json.loads(out.read_text())["engineers"]["e1"]["consumed_nanos"] == 30
