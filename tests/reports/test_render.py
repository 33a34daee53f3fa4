"""JSON, CSV and HTML carry the same numbers; the HTML renders cleanly in a
real headless Chromium (skipped, with the reason, where none is installed)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.reports.export import flatten, write_report
from compstream.reports.html_parts import FORMATS, value_at
from compstream.reports.org import build_org
from compstream.reports.render_html import render_html
from compstream.reports.statement import build_statement

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")


class _Bound(HTMLParser):
    """Collects every element carrying data-path, with its text, and the embedded JSON."""

    def __init__(self):
        super().__init__()
        self.bound: list[dict] = []
        self.open: list[tuple[str, dict]] = []
        self.svgs = 0
        self.embedded = ""
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.svgs += tag == "svg"
        self._in_data = tag == "script" and a.get("id") == "report-data"
        if "data-path" in a:
            record = {"tag": tag, **a, "text": ""}
            self.bound.append(record)
            self.open.append((tag, record))

    def handle_endtag(self, tag):
        self._in_data = False
        if self.open and self.open[-1][0] == tag:
            self.open.pop()

    def handle_data(self, data):
        if self._in_data:
            self.embedded += data
        for _, record in self.open:
            record["text"] += data


def _docs(store):
    return [build_statement(store, "zed", "2026-10"), build_statement(store, "eng-00000", "2026-10"),
            build_org(store, "2026-Q4")]


@pytest.fixture(scope="module")
def written(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out")
    return [(doc, write_report(doc, out)) for doc in _docs(store)]


def test_json_csv_html_agree(written):
    for doc, paths in written:
        from_file = json.loads(paths["json"].read_text())
        assert from_file == doc
        flat = {p: v for p, v in flatten(from_file)}
        rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
        assert len(rows) == len(flat)
        for row in rows:
            want = flat[row["path"]]
            assert row["value"] == ("" if want is None else str(want).lower() if isinstance(want, bool) else str(want))
        parser = _Bound()
        parser.feed(paths["html"].read_text())
        assert json.loads(parser.embedded) == from_file
        assert len(parser.bound) > 40 and parser.svgs >= (2 if doc["report"] == "statement" else 3)
        for el in parser.bound:
            want = value_at(from_file, el["data-path"])
            assert el["data-value"] == ("null" if want is None else str(want)), el["data-path"]
            if "data-format" in el:  # tables and cards: the shown text is the number, formatted
                assert el["text"].strip() == FORMATS[el["data-format"]](want), el["data-path"]
        marks = [el for el in parser.bound if el["tag"] == "rect"]
        assert marks, "charts must be bound to the JSON"


def test_every_period_number_is_shown(written):
    doc, paths = written[0]
    html = paths["html"].read_text()
    for field, value in doc["period_totals"].items():
        assert f'data-path="period_totals.{field}" data-value="{value}"' in html
    for model in doc["usage_by_model"]:
        assert f'data-path="usage_by_model[{model["id"]}].priced_cost_nanos"' in html


def test_html_escapes_untrusted_text(written):
    doc = json.loads(json.dumps(written[0][0]))
    doc["engineer_id"] = '<img src=x onerror="alert(1)"></script>'
    doc["usage_by_model"][0]["model"] = "<b>model</b>"
    html = render_html(doc)
    assert "<img src=x" not in html and "<b>model</b>" not in html
    assert html.count("</script>") == html.count("<script")  # nothing closed the JSON block early


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1280,2000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and re.search(r"Uncaught|Refused|Content Security Policy", line)]


@needs_chromium
def test_chromium_renders_without_errors_and_with_the_numbers(written, tmp_path):
    for doc, paths in written[::2]:  # one statement, the org report
        url = paths["html"].resolve().as_uri()
        dom = _chromium(tmp_path, "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert _console_errors(dom.stderr) == []
        assert 'data-js-errors="' not in dom.stdout
        assert 'data-selfcheck="ok"' in dom.stdout  # the page compared itself to its JSON
        checked = int(re.search(r'data-checked="(\d+)"', dom.stdout).group(1))
        assert checked == paths["html"].read_text().count("data-path=")
        assert dom.stdout.count("<svg") >= (2 if doc["report"] == "statement" else 3)
        assert 'class="bar"' in dom.stdout and 'class="segment"' in dom.stdout
        key = "period_totals" if doc["report"] == "statement" else "totals"
        used = doc[key]["usage_cost_nanos"]
        assert f'data-value="{used}"' in dom.stdout and FORMATS["usd"](used) in dom.stdout

        png = tmp_path / f"{doc['report']}.png"
        shot = _chromium(tmp_path, f"--screenshot={png}", url)
        assert shot.returncode == 0 and _console_errors(shot.stderr) == []
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (1280, 2000)
        assert len(data) > 40_000, "a blank page compresses to a few KB"


@needs_chromium
def test_chromium_check_catches_errors_and_mismatches(written, tmp_path):
    # Negative control: proves the two signals above can fail.
    _, paths = written[0]
    html = paths["html"].read_text()
    value = re.search(r'data-path="period_totals.issued_nanos" data-value="(\d+)"', html).group(1)
    broken = html.replace(f'data-path="period_totals.issued_nanos" data-value="{value}"',
                          f'data-path="period_totals.issued_nanos" data-value="{int(value) + 1}"', 1)
    broken = broken.replace("</body>", "<script>null.boom()</script></body>")
    page = tmp_path / "broken.html"
    page.write_text(broken)
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert 'data-js-errors="Uncaught TypeError' in dom.stdout
    assert 'data-selfcheck="mismatch:period_totals.issued_nanos"' in dom.stdout
    assert _console_errors(dom.stderr)


def test_cli_writes_the_three_files(store, report_history, tmp_path):
    dsn, _ = report_history
    runner = CliRunner()
    result = runner.invoke(app, ["report", "statement", "--engineer", "zed", "--period", "2026-10",
                                 "--dsn", dsn, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    stem = tmp_path / "statement-zed-2026-10"
    assert json.loads(stem.with_suffix(".json").read_text())["engineer_id"] == "zed"
    assert stem.with_suffix(".csv").exists() and stem.with_suffix(".html").exists()
    result = runner.invoke(app, ["report", "org", "--period", "2026-10", "--dsn", dsn, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "org-2026-10.html").exists()
    for args in (["statement", "--engineer", "zed", "--period", "2026-Q4"],
                 ["org", "--period", "2026-13"],
                 ["statement", "--engineer", "nobody", "--period", "2026-10"],
                 ["org", "--period", "2026-10", "--dsn", "memory://"]):
        extra = [] if "--dsn" in args else ["--dsn", dsn]
        result = runner.invoke(app, ["report", *args, *extra, "--out", str(tmp_path)])
        assert result.exit_code == 2, (args, result.output)
