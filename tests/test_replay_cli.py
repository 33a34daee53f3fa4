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
from compstream.replay.file import read_jsonl

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


def test_output_to_a_fifo_writes_to_it_and_leaves_it_a_fifo(app, tmp_path):
    """Outputs that are not regular files (/dev/null, a FIFO) are written to,
    never renamed over: run as root, the atomic rename had turned /dev/null
    into a regular file. A FIFO stands in for the device here."""
    import os
    import stat
    import threading

    a = _write(tmp_path / "a.jsonl", [event_to_json(e) for e in _events()])
    out, fifo = tmp_path / "balances.json", tmp_path / "out.fifo"
    assert CliRunner().invoke(app, ["replay", "-i", a, "-o", str(out)]).exit_code == 0
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = CliRunner().invoke(app, ["replay", "-i", a, "-o", str(fifo)])
    reader.join(30)
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got == [out.read_bytes()]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.fifo.")] == []


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


# ---------------------------------------------------------------- --jobs N
# `--jobs N` splits the replay by engineer over N forked workers; every
# visible result must be byte-identical to `--jobs 1` (the one-process path).

T = "2026-01-02T00:00:00.000000Z"


def _hr(kind: str, eid: str, eng: str, **fields) -> str:
    return json.dumps({"type": kind, "event_id": eid, "engineer_id": eng, "effective_at": T,
                       **fields}, separators=(",", ":"))


def _mixed_lines(tmp_path) -> list[bytes]:
    """A generated log plus duplicates, conflicts, HR events, ledger reports,
    bad lines and engineer ids the byte-level routing cannot read."""
    import random

    from bench.bench_replay import generate

    gen = tmp_path / "gen.jsonl"
    generate(str(gen), 3000, 40, seed=3)
    lines = gen.read_text().splitlines()
    usages = [x for x in lines if '"type":"usage"' in x]
    out = list(lines)
    out += lines[10:60]  # exact duplicates
    out += [json.dumps(json.loads(x)) for x in usages[60:80]]  # same payload, `": "` spacing
    for x in usages[100:130]:  # conflicts: same event_id, other payload
        obj = json.loads(x)
        obj["input_tokens"] += 1
        out.append(json.dumps(obj, separators=(",", ":")))
    for x in usages[130:140]:  # the engineer id as an escape: same engineer, duplicates
        out.append(x.replace('"engineer_id":"eng-', '"engineer_id":"eng\\u002d'))
    for x in usages[140:150]:  # ... and conflicts through the escaped form
        obj = json.loads(x)
        obj["output_tokens"] += 1
        out.append(json.dumps(obj, separators=(",", ":")).replace('"eng-', '"eng\\u002d'))
    g = ('{"type":"grant_issued","event_id":"gq-%d","engineer_id":%s,"grant_id":"GQ%d",'
         '"amount_nanos":1000,"effective_at":"%s","expires_at":null,"kind":"x"}')
    u = ('{"type":"usage","event_id":"uq-%d","engineer_id":%s,"provider":"p","model":"m",'
         '"occurred_at":"2026-01-03T00:00:00.000000Z","input_tokens":1,"output_tokens":1,'
         '"cost_nanos":%d}')
    for i, eng in enumerate(['"eng\\"quote"', '"ing\u00e9"', '"ing\\u00e9"', '"\u5de5\u7a0b"']):
        out += [g % (i, eng, i, T), u % (i, eng, 7 + i), u % (i, eng, 7 + i)]
    out += [u % (9, '"ing\\u00e9"', 99)]  # a new event of that engineer, through the escape
    out += [u % (1, '"ing\\u00e9"', 1)]  # conflict with uq-1 (written raw UTF-8 above)
    out += [
        # duplicate key: the last one is the engineer
        u.replace('{"type"', '{"engineer_id":"eng-00001","type"') % (50, '"eng-00002"', 5),
        # a key that ends in `"engineer_id` and the real one spelled with an escape
        ('{"\\"engineer_id":"eng-00003","type":"usage","event_id":"uq-51","engineer\\u005fid":'
         '"eng-00004","provider":"p","model":"m","occurred_at":"2026-01-03T00:00:00.000000Z",'
         '"input_tokens":1,"output_tokens":1,"cost_nanos":3}'),
        u.replace('"engineer_id":', '"engineer_id" :  ') % (52, '"eng-00005"', 4),  # spaces
        u.replace('"engineer_id":%s', '"meta":{"engineer_id":%s}') % (53, '"eng-00006"', 1),
        u % (54, '"eng\\u0001"', 1),  # control character: bad
        u % (55, '""', 1),  # empty id: bad
        '{"type":"usage","event_id":"x","engineer_id":"eng-00008"}',  # provider missing
        "{not json", "[1, 2]", '{"a":1', '{"engineer_id":"eng-00001","a":1', "", "   ", "\t",
        _hr("team_assigned", "t1", "eng-00001", team_id="T1"),
        _hr("team_assigned", "t1", "eng-00001", team_id="T1"),  # HR: never deduplicated
        _hr("leaderboard_privacy", "p1", "eng-00009", opted_out=True),
        _hr("cash_compensation", "c1", "eng\\u002d00010", annual_cash_nanos=10**12),
        _hr("cash_compensation", "c2", "eng-00011", annual_cash_nanos=-1),  # bad
    ]
    out += [('{"type":"grant_revoked","event_id":"rx-%d","engineer_id":"eng-%05d","grant_id":"NOPE",'
             '"effective_at":"%s"}' % (i, i, T)) for i in range(12, 30)]  # ledger reports
    random.Random(5).shuffle(out)
    raw = [x.encode("utf-8") for x in out]
    raw += [b'{"type":"usage","event_id":"z","engineer_id":"eng-\xff"}',  # not UTF-8
            b'{"type":"usage","event_id":"uq-60","engineer_id":"eng-00013"}\r']  # CRLF
    random.Random(6).shuffle(raw)
    return raw


def _two_files(tmp_path, lines: list[bytes]) -> tuple[str, str]:
    cut = len(lines) * 3 // 5
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"\n".join(lines[:cut]) + b"\n")
    b.write_bytes(b"\n".join(lines[cut:]) + b'\n{"type":"usage","engineer_id":"eng-1"')  # no newline
    return str(a), str(b)


def _run_jobs(app, tmp_path, args: list[str], jobs: str) -> tuple:
    out, errors = tmp_path / "out.json", tmp_path / "errors.jsonl"
    for f in (out, errors):
        f.unlink(missing_ok=True)
    r = CliRunner().invoke(app, ["replay", *args, "--errors", str(errors), "--jobs", jobs])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    read = lambda f: f.read_bytes() if f.exists() else None  # noqa: E731
    return r.exit_code, r.stdout, r.stderr, read(out), read(errors)


@pytest.mark.parametrize("variant", ["stdout", "file", "as_of", "strict", "same_file_twice"])
def test_jobs_output_byte_identical(app, tmp_path, variant):
    a, b = _two_files(tmp_path, _mixed_lines(tmp_path))
    out = str(tmp_path / "out.json")
    args = {"stdout": ["-i", a, "-i", b, "-o", "-"],
            "file": ["-i", b, "-i", a, "-o", out],
            "as_of": ["-i", a, "-i", b, "-o", out, "--as-of", "2026-02-10T00:00:00Z"],
            "strict": ["-i", a, "-i", b, "-o", out, "--strict"],
            "same_file_twice": ["-i", a, "-i", a, "-o", "-"]}[variant]
    one = _run_jobs(app, tmp_path, args, "1")
    code, stdout, stderr, doc, errs = one
    # the data exercises what it should
    assert code == (1 if variant == "strict" else 0)
    assert "conflict" in stderr and "bad line" in stderr and " duplicates ignored" in stderr
    assert "0 duplicates ignored" not in stderr and " 0 conflicts rejected" not in stderr
    problems = [json.loads(x) for x in errs.splitlines()]
    assert {"bad line", "conflict", "revoke_unknown_grant"} <= {p["kind"] for p in problems}
    if variant == "strict":
        assert doc is None and stdout == ""
    elif variant != "same_file_twice":
        text = stdout if variant == "stdout" else doc.decode()
        assert '"ing\\u00e9"' in text and '"eng\\"quote"' in text
    for jobs in ("2", "3"):
        assert _run_jobs(app, tmp_path, args, jobs) == one, f"--jobs {jobs} differs"


def test_jobs_truncated_stderr_identical(app, tmp_path, monkeypatch):
    from compstream.cli import replay_cmd

    monkeypatch.setattr(replay_cmd, "SHOWN_PROBLEMS_MAX", 7)
    a, b = _two_files(tmp_path, _mixed_lines(tmp_path))
    args = ["-i", a, "-i", b, "-o", "-"]
    one = _run_jobs(app, tmp_path, args, "1")
    assert "more not shown" in one[2]
    assert _run_jobs(app, tmp_path, args, "2") == one


def test_jobs_worker_death_fails_loudly(app, tmp_path, monkeypatch):
    import os

    from compstream.replay import parallel as replay_parallel

    a, b = _two_files(tmp_path, _mixed_lines(tmp_path))
    real_work = replay_parallel.work

    def dying(paths, me, jobs, as_of, send_bytes=None):
        if me == 1:
            os._exit(7)  # as if killed: no message to the parent
        return real_work(paths, me, jobs, as_of, send_bytes)

    monkeypatch.setattr(replay_parallel, "work", dying)
    out = tmp_path / "o.json"
    r = CliRunner().invoke(app, ["replay", "-i", a, "-i", b, "-o", str(out), "--jobs", "2"])
    assert r.exit_code == 3, r.output
    assert "replay worker 2 of 2 died (exit code 7)" in r.stderr
    assert not out.exists()

    def raising(paths, me, jobs, as_of, send_bytes=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(replay_parallel, "work", raising)
    r = CliRunner().invoke(app, ["replay", "-i", a, "-o", "-", "--jobs", "3"])
    assert r.exit_code == 3 and "failed" in r.stderr and "RuntimeError: boom" in r.stderr
    assert r.stdout == ""


def test_jobs_unreadable_input_and_other_sources(app, tmp_path):
    d = tmp_path / "dir.jsonl"
    d.mkdir()
    one = CliRunner().invoke(app, ["replay", "-i", str(d), "--jobs", "1"])
    two = CliRunner().invoke(app, ["replay", "-i", str(d), "--jobs", "2"])
    assert one.exit_code == two.exit_code == 2
    assert "cannot read input" in two.stderr and one.stderr == two.stderr
    r = CliRunner().invoke(app, ["replay", "--from-kafka", "--jobs", "2"])
    assert r.exit_code == 2 and "--jobs" in r.stderr
    r = CliRunner().invoke(app, ["replay", "-i", str(d), "--jobs", "0"])
    assert r.exit_code == 2


def test_jobs_with_a_pipe_input_reads_it_once(app, tmp_path):
    """Workers each read every input: a FIFO cannot be read twice, so it
    takes the one-process path (same output as the regular file). A real
    process with a timeout: split between workers, the read could hang."""
    import os
    import subprocess
    import sys
    import threading

    a, _ = _two_files(tmp_path, _mixed_lines(tmp_path))
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    data = open(a, "rb").read()

    def feed():
        with open(fifo, "wb") as fh:
            fh.write(data)

    threading.Thread(target=feed, daemon=True).start()
    cmd = [sys.executable, "-m", "compstream.cli.main", "replay", "-o", "-", "--no-progress"]
    r = subprocess.run([*cmd, "-i", str(fifo), "--jobs", "2"], capture_output=True, timeout=60)
    one = subprocess.run([*cmd, "-i", a, "--jobs", "1"], capture_output=True, timeout=60)
    assert r.returncode == one.returncode == 0
    assert r.stdout == one.stdout
    assert r.stderr == one.stderr.replace(a.encode(), str(fifo).encode())
