"""Write a report document as JSON (the source of truth), CSV and HTML.

The CSV is the document flattened: one row per leaf number or text, keyed by
the same path the HTML's `data-path` attributes use, so the three files can
be compared mechanically.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

from compstream.reports.period import ReportError
from compstream.reports.render_html import render_html

CSV_COLUMNS = ("path", "section", "item", "field", "value")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def flatten(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs; list items are addressed by their `id`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from flatten(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if not isinstance(item, dict) or "id" not in item:
                raise ReportError(f"list item {path}[{index}] has no id")
            yield from flatten(item, f"{path}[{item['id']}]")
    else:
        yield path, node


def to_csv(doc: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for path, value in flatten(doc):
        items = re.findall(r"\[([^\]]*)\]", path)
        field = re.split(r"[.\]]", path)[-1]
        text = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        writer.writerow((path, re.split(r"[.\[]", path)[0], items[-1] if items else "", field, text))
    return out.getvalue()


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def file_stem(doc: dict) -> str:
    if doc["report"] == "statement":
        # Engineer ids are free text; never let one pick a path.
        return f"statement-{_UNSAFE.sub('_', doc['engineer_id'])[:80]}-{doc['period']}"
    return f"org-{doc['period']}"


def write_report(doc: dict, out_dir: Path) -> dict[str, Path]:
    """Write <stem>.json, .csv, .html into out_dir; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = file_stem(doc)
    html = render_html(doc)  # render first: a rendering error leaves no partial set
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "html": out_dir / f"{stem}.html"}
    paths["json"].write_text(to_json(doc), encoding="utf-8")
    paths["csv"].write_text(to_csv(doc), encoding="utf-8")
    paths["html"].write_text(html, encoding="utf-8")
    return paths
