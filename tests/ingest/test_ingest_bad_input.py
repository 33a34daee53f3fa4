"""Bad input is reported with file, line/row and reason; nothing from it becomes an event."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.domain.events import event_from_dict

from .conftest import adapt, fixture_path


def test_openai_bad_rows_reported_with_json_path():
    rows, rejections, _ = adapt("openai", "openai_bad.json")
    text = [str(r) for r in rejections]
    assert len(rows) == 1  # the valid row of the file still counts
    assert any("data[0].results[0]" in t and "negative" in t for t in text)
    assert any("data[0].results[1]" in t and "missing field 'input_tokens'" in t for t in text)
    assert any("data[1]" in t and "start_time" in t for t in text)
    assert all(str(fixture_path("openai_bad.json")) in t for t in text)


def test_gcp_bad_rows_reported_with_csv_line():
    rows, rejections, _ = adapt("gcp", "gcp_bad.csv")
    assert rows == []
    by_line = {r.location.line: r.reason for r in rejections}
    assert "EUR" in by_line[2] and "no FX" in by_line[2]
    assert "usage_start_time" in by_line[3]
    assert "negative net cost" in by_line[4]


def test_malformed_jsonl_lines_reported_and_others_kept():
    rows, rejections, _ = adapt("jsonl", "malformed.jsonl")
    assert [r.event_id for r in rows] == ["x:1"]
    lines = {r.location.line: r.reason for r in rejections}
    assert "malformed JSON" in lines[2]
    assert "input_tokens" in lines[3]


def test_malformed_whole_document(tmp_path):
    bad = tmp_path / "page.json"
    bad.write_text('{"object": "page", "data": [\n  {"start_time": 1,\n')
    from compstream.ingest import ADAPTERS

    items = list(ADAPTERS["anthropic"](bad.read_text(), str(bad)))
    assert len(items) == 1 and "malformed JSON" in items[0].reason


def test_cli_reports_rejections_and_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(tmp_path))
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["ingest", "gcp", str(fixture_path("gcp_bad.csv")),
                                      str(fixture_path("gcp_billing.csv")),
                                      "--identity", str(fixture_path("identity.toml")), "--output", str(out)])
    assert result.exit_code == 1, result.output
    assert "gcp_bad.csv:2" in result.output and "EUR" in result.output
    events = [event_from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert len(events) == 4  # only the good file's rows
    # fix the file (drop the bad rows) and re-run: idempotent, nothing new
    again = tmp_path / "again.jsonl"
    result = CliRunner().invoke(app, ["ingest", "gcp", str(fixture_path("gcp_billing.csv")),
                                      "--identity", str(fixture_path("identity.toml")), "--output", str(again)])
    assert result.exit_code == 0, result.output
    assert again.read_text() == ""


def test_cli_strict_ingests_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(tmp_path))
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        app, ["ingest", "openai", str(fixture_path("openai_bad.json")), "--strict", "--output", str(out)])
    assert result.exit_code == 1
    assert not out.exists()


def test_cli_dry_run_summary_and_journal_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(tmp_path))
    args = ["ingest", "openai", str(fixture_path("openai_usage_page1.json")),
            str(fixture_path("openai_usage_page2.json")),
            "--identity", str(fixture_path("identity.toml")), "--dry-run"]
    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "unattributed" in first.output and "cost total" in first.output and "$" in first.output
    ids1 = [json.loads(line)["event_id"] for line in first.stdout.splitlines() if line.startswith("{")]
    ids2 = [json.loads(line)["event_id"] for line in second.stdout.splitlines() if line.startswith("{")]
    assert len(ids1) == 5 and ids1 == ids2  # dry run never journals


def test_cli_bad_identity_map(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(tmp_path))
    bad = tmp_path / "id.toml"
    bad.write_text('version = 1\n[owners]\n"agent:a" = "agent:a"\n')
    result = CliRunner().invoke(
        app, ["ingest", "openai", str(fixture_path("openai_usage_page1.json")), "--identity", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "cycle" in result.output


def test_paged_exports_reject_bad_pages_and_lists_where_they_are():
    # The page walk the OpenAI and Anthropic adapters share (ingest/pages.py):
    # a page without a data list, a bucket whose results or a record whose
    # model breakdown is not a list, each a rejection at its place, the
    # rest of the export still read.
    from compstream.ingest import anthropic, openai

    bucket = {"start_time": 1_790_000_000, "end_time": 1_790_003_600, "results": "none"}
    text = json.dumps([{"object": "page"}, {"data": [bucket]}])
    for parse in (openai.parse_usage, openai.parse_costs):
        found = [(str(r.location), r.reason) for r in parse(text, "export.json")]
        assert found == [("export.json ([0])", "not a usage page: expected an object with a 'data' list"),
                         ("export.json ([1].data[0])", "field 'results' must be a list")], found
    page = {"data": [{"starting_at": "2026-10-10T00:00:00Z", "ending_at": "2026-10-11T00:00:00Z",
                      "results": {"model": "claude"}}]}
    found = [(str(r.location), r.reason) for r in anthropic.parse_messages(json.dumps(page), "report.json")]
    assert found == [("report.json:1 (data[0])", "field 'results' must be a list")], found
    record = {"date": "2026-10-10", "actor": {"type": "user_actor", "email_address": "ada@example.com"},
              "model_breakdown": None}
    found = [(str(r.location), r.reason)
             for r in anthropic.parse_claude_code(json.dumps({"data": [record]}), "code.json")]
    assert found == [("code.json:1 (data[0])", "field 'model_breakdown' must be a list")], found
    found = [(str(r.location), r.reason) for r in anthropic.parse_claude_code("[1]", "code.json")]
    assert found == [("code.json ([0])", "not a report page: expected an object with a 'data' list")], found
