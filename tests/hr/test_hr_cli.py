"""The CLI offline (`--events` history, `-o` output): idempotent re-runs, and a
bad file publishes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.domain.grant_labels import parse_kind

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GOOD = """type,engineer_id,effective_at,grant_id,amount_usd,team_id
grant_issued,ada,2026-10-01,signing-1,500,
team_assigned,ada,2026-10-01,,,platform
grant_revoked,ada,2026-10-10,signing-1,,
"""
BAD = """type,engineer_id,effective_at,grant_id,amount_usd,team_id
team_assigned,ken,2026-10-01,,,infra
grant_issued,ken,2026-10-01,signing-2,ten dollars,
"""


def _run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _summary_value(output: str, label: str) -> str:
    """The value cell of a summary table row."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 3 and cells[1] == label:
            return cells[2]
    raise AssertionError(f"no summary row {label!r} in:\n{output}")


def _publish(history: Path, out: Path) -> None:
    """What the broker would now hold: the history plus the run's output."""
    with history.open("a") as fh:
        fh.write(out.read_text())


def test_hr_import_twice_publishes_nothing_new(tmp_path):
    (tmp_path / "hr.csv").write_text(GOOD)
    history = tmp_path / "history.jsonl"
    history.write_text("")
    first = _run("hr", "import", str(tmp_path / "hr.csv"), "--events", str(history), "-o", str(tmp_path / "1.jsonl"))
    assert first.exit_code == 0, first.output
    assert [e["type"] for e in _events(tmp_path / "1.jsonl")] == ["grant_issued", "team_assigned", "grant_revoked"]
    _publish(history, tmp_path / "1.jsonl")
    second = _run("hr", "import", str(tmp_path / "hr.csv"), "--events", str(history), "-o", str(tmp_path / "2.jsonl"))
    assert second.exit_code == 0
    assert _events(tmp_path / "2.jsonl") == []
    assert _summary_value(second.output, "already published") == "3"
    assert _summary_value(second.output, "new events") == "0"


def test_a_bad_file_publishes_nothing_and_says_where(tmp_path):
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bad.csv").write_text(BAD)
    history = tmp_path / "history.jsonl"
    history.write_text("")
    out = tmp_path / "out.jsonl"
    result = _run("hr", "import", str(tmp_path / "good.csv"), str(tmp_path / "bad.csv"), "--events", str(history),
                  "-o", str(out))
    assert result.exit_code == 1
    assert f"{tmp_path / 'bad.csv'}:3: amount:" in result.output.replace("\n", "")
    assert {e["engineer_id"] for e in _events(out)} == {"ada"}  # ken's valid row 2 is not published either


def test_revoking_an_unknown_grant_is_rejected_offline(tmp_path):
    (tmp_path / "r.csv").write_text("type,engineer_id,effective_at,grant_id\ngrant_revoked,ada,2026-10-10,nope\n")
    history = tmp_path / "history.jsonl"
    history.write_text("")
    result = _run("hr", "import", str(tmp_path / "r.csv"), "--events", str(history), "--roster",
                  str(EXAMPLES / "roster.csv"), "-o", str(tmp_path / "o.jsonl"))
    assert result.exit_code == 1 and "never issued" in result.output
    assert _events(tmp_path / "o.jsonl") == []


def test_grants_issue_is_idempotent_and_a_changed_roster_issues_the_difference(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text("")
    args = ["grants", "issue", "--period", "2026-10", "--policy", str(EXAMPLES / "policy.toml"),
            "--events", str(history)]
    first = _run(*args, "--roster", str(EXAMPLES / "roster.csv"), "-o", str(tmp_path / "1.jsonl"))
    assert first.exit_code == 0, first.output
    issued = _events(tmp_path / "1.jsonl")
    assert issued and all(parse_kind(e["kind"]) for e in issued)
    _publish(history, tmp_path / "1.jsonl")
    again = _run(*args, "--roster", str(EXAMPLES / "roster.csv"), "-o", str(tmp_path / "2.jsonl"))
    assert again.exit_code == 0 and _events(tmp_path / "2.jsonl") == []
    # ada leaves on Oct 20: her monthly and quarterly lines shrink (her bonus of
    # Oct 15 stays), nobody else changes.
    changed = tmp_path / "roster.csv"
    changed.write_text((EXAMPLES / "roster.csv").read_text().replace("ada,L5,platform,2024-03-01,",
                                                                     "ada,L5,platform,2024-03-01,2026-10-20"))
    diff = _run(*args, "--roster", str(changed), "-o", str(tmp_path / "3.jsonl"))
    assert diff.exit_code == 0
    events = _events(tmp_path / "3.jsonl")
    assert {e["engineer_id"] for e in events} == {"ada"}
    assert {e["type"] for e in events} == {"grant_revoked"} and len(events) == 3
    assert {e["effective_at"][:10] for e in events} == {"2026-10-21"}


def test_explain_says_why_and_publishes_nothing(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text("")
    result = _run("grants", "issue", "--period", "2026-10", "--policy", str(EXAMPLES / "policy.toml"),
                  "--roster", str(EXAMPLES / "roster.csv"), "--events", str(history), "--explain", "hedy")
    assert result.exit_code == 0
    assert "20/31 days" in result.output and "-> issue pol:eng:2026-10:base:" in result.output


def test_bad_policy_is_a_clear_error(tmp_path):
    (tmp_path / "p.toml").write_text('[policy]\nname = "eng"\nversion = 1\neffective_from = 2026-01-01\n'
                                     '[[rule]]\nname = "base"\namount_usd = "1.0000000001"\n')
    result = _run("grants", "issue", "--period", "2026-10", "--policy", str(tmp_path / "p.toml"),
                  "--roster", str(EXAMPLES / "roster.csv"), "--events", str(tmp_path / "p.toml"))
    assert result.exit_code == 2 and "more precise than a nano" in result.output
