"""Inline SVG charts, generated in Python (no script, no network).

Every mark carries `data-path`/`data-value` pointing into the report JSON, so
tests (and the page's own self-check) can tie a bar back to its number.
"""

from __future__ import annotations

from html import escape
from typing import Any, Callable, NamedTuple

COLORS = {
    "granted": "#76b7b2", "consumed_before": "#9db7d5", "consumed": "#4e79a7", "expired": "#e15759",
    "revoked": "#f28e2b", "forfeited": "#b07aa1", "remaining": "#59a14f", "overdraft": "#9c755f",
    "bar": "#4e79a7", "hist": "#59a14f",
}
_FONT = "font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif"


class Bar(NamedTuple):
    label: str
    value: int
    path: str


class Segment(NamedTuple):
    label: str
    value: int
    path: str
    color: str


def _attr(path: str, value: int) -> str:
    return f'data-path="{escape(path)}" data-value="{value}"'


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" style="{_FONT}">'
            f'<title>{escape(title)}</title>{"".join(body)}</svg>')


def hbars(title: str, bars: list[Bar], fmt: Callable[[int], str], width: int = 720) -> str:
    """Horizontal bars, longest first as given; labels left, values right."""
    label_w, value_w, row_h = 250, 110, 26
    plot_w = width - label_w - value_w
    top = max((b.value for b in bars), default=0)
    body = []
    for i, b in enumerate(bars):
        y = 8 + i * row_h
        w = 0 if top <= 0 else max(1, round(plot_w * max(b.value, 0) / top))
        body.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="13">{escape(b.label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" rx="3" '
            f'fill="{COLORS["bar"]}" {_attr(b.path, b.value)}>'
            f'<title>{escape(b.label)}: {escape(fmt(b.value))}</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 16}" font-size="12" fill="#333">{escape(fmt(b.value))}</text>')
    if not bars:
        body.append('<text x="10" y="24" font-size="13" fill="#666">No usage in this period.</text>')
    return _svg(width, 16 + max(1, len(bars)) * row_h, title, body)


def stacked(title: str, rows: list[tuple[str, list[Segment]]], fmt: Callable[[int], str],
            width: int = 720) -> str:
    """One horizontal stacked bar per row, on a shared scale, with a legend."""
    label_w, row_h, total_w = 190, 40, 90
    plot_w = width - label_w - total_w
    top = max((sum(max(s.value, 0) for s in segs) for _, segs in rows), default=0)
    body: list[str] = []
    legend: dict[str, Any] = {}
    for i, (label, segs) in enumerate(rows):
        y = 10 + i * row_h
        x = float(label_w)
        short = label if len(label) <= 24 else "…" + label[-23:]  # the tail tells grants apart
        body.append(f'<text x="{label_w - 8}" y="{y + 20}" text-anchor="end" font-size="12">'
                    f'<title>{escape(label)}</title>{escape(short)}</text>')
        for s in segs:
            if s.value:
                legend.setdefault(s.label, s.color)
            w = 0.0 if top <= 0 else plot_w * max(s.value, 0) / top
            body.append(f'<rect class="segment" x="{x:.2f}" y="{y + 4}" width="{w:.2f}" height="{row_h - 12}" '
                        f'fill="{s.color}" {_attr(s.path, s.value)}><title>{escape(s.label)}: '
                        f'{escape(fmt(s.value))}</title></rect>')
            x += w
        total = sum(s.value for s in segs)
        body.append(f'<text x="{x + 6:.2f}" y="{y + 20}" font-size="12" fill="#333">{escape(fmt(total))}</text>')
    ly = 16 + len(rows) * row_h
    lx = label_w
    for label, color in legend.items():
        body.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color}"/>'
                    f'<text x="{lx + 16}" y="{ly}" font-size="12">{escape(label)}</text>')
        lx += 28 + 7 * len(label)
    return _svg(width, ly + 12, title, body)


def columns(title: str, bars: list[Bar], fmt_count: Callable[[int], str], width: int = 720,
            height: int = 260) -> str:
    """Vertical columns (a histogram): label under each, count above."""
    left, bottom, top_pad = 40, 46, 20
    plot_h = height - bottom - top_pad
    n = max(1, len(bars))
    slot = (width - left - 10) / n
    top = max((b.value for b in bars), default=0)
    body = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"/>']
    for i, b in enumerate(bars):
        h = 0 if top <= 0 else plot_h * b.value / top
        x = left + i * slot + 3
        y = height - bottom - h
        body.append(
            f'<rect class="column" x="{x:.2f}" y="{y:.2f}" width="{slot - 6:.2f}" height="{h:.2f}" '
            f'fill="{COLORS["hist"]}" {_attr(b.path, b.value)}><title>{escape(b.label)}: {b.value}</title></rect>'
            f'<text x="{x + (slot - 6) / 2:.2f}" y="{y - 4:.2f}" text-anchor="middle" font-size="12">'
            f'{escape(fmt_count(b.value))}</text>'
            f'<text x="{x + (slot - 6) / 2:.2f}" y="{height - bottom + 16}" text-anchor="middle" font-size="10" '
            f'fill="#444">{escape(b.label)}</text>')
    return _svg(width, height, title, body)
