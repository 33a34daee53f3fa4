"""The roster: who is employed when, at which level, in which team.

CSV with a header `engineer,level,team,start,end`; one row per stretch of
constant level and team. `start` and `end` are UTC dates, both inclusive;
an empty `end` means still employed. A level change or team move is a new
row starting the day after the previous one ends. Rows of one engineer must
not overlap. Errors name the file and line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from compstream.domain.events import ENGINEER_ID_LENGTH_MAX, TEAM_ID_LENGTH_MAX

COLUMNS = ("engineer", "level", "team", "start", "end")
LEVEL_LENGTH_MAX = 64
ROWS_MAX = 1_000_000


class RosterError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RosterRow:
    engineer: str
    level: str
    team: str
    start: date
    end: date | None  # inclusive; None = open-ended
    line: int = 0

    @property
    def end_exclusive(self) -> date | None:
        return None if self.end is None else self.end + timedelta(days=1)

    def overlaps(self, start: date, end_exclusive: date) -> tuple[date, date] | None:
        """The part of [start, end_exclusive) this row covers, if any."""
        lo = max(start, self.start)
        own_end = self.end_exclusive
        hi = end_exclusive if own_end is None else min(end_exclusive, own_end)
        return (lo, hi) if lo < hi else None


def _date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise RosterError(f"{what}: expected a date YYYY-MM-DD, got {value!r}") from exc


def _text(value: str | None, what: str, length_max: int) -> str:
    value = (value or "").strip()
    if not value:
        raise RosterError(f"{what}: missing")
    if len(value) > length_max or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise RosterError(f"{what}: at most {length_max} printable characters")
    return value


def parse_roster(text: str, name: str = "<roster>") -> list[RosterRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if tuple(header) != COLUMNS:
        raise RosterError(f"{name}:1: header must be {','.join(COLUMNS)}, got {','.join(header) or '(empty)'}")
    rows: list[RosterRow] = []
    for record in reader:
        line = reader.line_num
        where = f"{name}:{line}"
        if None in record:
            raise RosterError(f"{where}: more fields than the header")
        if all(not (v or "").strip() for v in record.values()):
            continue
        if len(rows) >= ROWS_MAX:
            raise RosterError(f"{where}: more than {ROWS_MAX} rows")
        engineer = _text(record["engineer"], f"{where}: engineer", ENGINEER_ID_LENGTH_MAX)
        start = _date(record["start"] or "", f"{where}: start")
        end = _date(record["end"], f"{where}: end") if (record["end"] or "").strip() else None
        if end is not None and end < start:
            raise RosterError(f"{where}: end {end} is before start {start}")
        rows.append(RosterRow(engineer, _text(record["level"], f"{where}: level", LEVEL_LENGTH_MAX),
                              _text(record["team"], f"{where}: team", TEAM_ID_LENGTH_MAX), start, end, line))
    _check_overlaps(rows, name)
    return rows


def _check_overlaps(rows: list[RosterRow], name: str) -> None:
    by_engineer: dict[str, list[RosterRow]] = {}
    for row in rows:
        by_engineer.setdefault(row.engineer, []).append(row)
    for engineer, mine in by_engineer.items():
        mine.sort(key=lambda r: r.start)
        for a, b in zip(mine, mine[1:], strict=False):
            if a.end is None or a.end >= b.start:
                raise RosterError(f"{name}:{b.line}: {engineer} overlaps line {a.line} "
                                  f"(rows of one engineer must not overlap)")


def load_roster(path: str | Path) -> list[RosterRow]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"{path}: cannot read: {exc}") from exc
    return parse_roster(text, str(path))


def by_engineer(rows: list[RosterRow]) -> dict[str, list[RosterRow]]:
    out: dict[str, list[RosterRow]] = {}
    for row in sorted(rows, key=lambda r: (r.engineer, r.start)):
        out.setdefault(row.engineer, []).append(row)
    return out


def employment_end(rows: list[RosterRow]) -> date | None:
    """The exclusive end of the engineer's last row (None if open-ended)."""
    last = max(rows, key=lambda r: r.start)
    return last.end_exclusive
