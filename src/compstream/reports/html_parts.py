"""HTML elements of a report page bound to the report document: every number
carries `data-path`, `data-value` and `data-format` (render_html.py says why)."""

from __future__ import annotations

import re
from html import escape
from typing import Any, Callable

from compstream.reports.money import percent, tokens, usd

_PATH_PART = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")
FORMATS: dict[str, Callable[[Any], str]] = {"usd": usd, "int": tokens, "ppm": percent}


def value_at(doc: Any, path: str) -> Any:
    """Resolve 'a.b[id].c' in a report document (list items by their `id`)."""
    cur = doc
    for match in _PATH_PART.finditer(path):
        name, key = match.groups()
        if name is not None:
            cur = cur.get(name) if isinstance(cur, dict) else None
        else:  # ids may hold dots (model names), never ']'
            cur = next((item for item in cur if str(item.get("id")) == key), None) if isinstance(cur, list) else None
        if cur is None:
            return None
    return cur


def num(doc: dict, path: str, fmt: str = "usd", tag: str = "td") -> str:
    """A number element bound to the JSON (value must be an int or null)."""
    value = value_at(doc, path)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{path} is not an integer: {value!r}")
    text = FORMATS[fmt](value)
    data_value = "null" if value is None else str(value)
    cls = ' class="num"' if tag == "td" else ' class="v"'
    return (f'<{tag}{cls} data-path="{escape(path)}" data-value="{data_value}" '
            f'data-format="{fmt}">{escape(text)}</{tag}>')


def card(doc: dict, label: str, path: str, fmt: str = "usd") -> str:
    return f'<div class="card"><div class="k">{escape(label)}</div>{num(doc, path, fmt, tag="div")}</div>'


def table(headers: list[tuple[str, bool]], rows: list[list[str]], empty: str = "Nothing in this period.") -> str:
    """headers: (title, numeric); rows: pre-rendered cells (`<td>` strings)."""
    head = "".join(f'<th{" class=num" if numeric else ""}>{escape(title)}</th>' for title, numeric in headers)
    if not rows:
        return f'<p class="note">{escape(empty)}</p>'
    body = "".join(f"<tr>{''.join(cells)}</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cell(text: Any, mono: bool = False) -> str:
    return f'<td{" class=mono" if mono else ""}>{escape("–" if text is None else str(text))}</td>'
