"""HR exports (CSV or JSON Lines) -> canonical HR events, validated row by row.

One row is one event; the `type` column says which (see docs/hr.md):
grant_issued, grant_revoked, team_assigned, engineer_offboarded,
cash_compensation, leaderboard_privacy. A column that does not belong to the
row's type must be empty. Dates may be `YYYY-MM-DD` (midnight UTC) or RFC 3339
with a zone. Dollar amounts are exact (`amount_usd`) or nanos (`amount_nanos`).

Event ids are deterministic: `hr:` + sha256 of the row's canonical fields
(not its file or line), so re-importing a file, or the same row in a later
export, yields the same id and the worker drops it as a duplicate. A row may
give its own `event_id` instead.

A file with any bad row is rejected whole (`FileResult.accepted` is False):
an HR export is a unit, and publishing half of it would leave a state nobody
asked for. Every error names the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any, Callable, Iterator

from compstream.domain.events import (
    HR_EVENT_TYPES,
    Event,
    EventError,
    GrantIssued,
    GrantRevoked,
    event_from_dict,
    format_time,
    parse_time,
)
from compstream.hr.money import AmountError, nanos_field

COMMON = ("type", "event_id", "engineer_id", "effective_at")
FIELDS_BY_TYPE = {
    "grant_issued": ("grant_id", "amount_usd", "amount_nanos", "expires_at", "kind"),
    "grant_revoked": ("grant_id",),
    "engineer_offboarded": (),
    "team_assigned": ("team_id",),
    "cash_compensation": ("annual_cash_usd", "annual_cash_nanos"),
    "leaderboard_privacy": ("opted_out",),
}
COLUMNS = COMMON + tuple(sorted({c for cols in FIELDS_BY_TYPE.values() for c in cols}))
DEFAULT_GRANT_KIND = "grant"
RESERVED_GRANT_PREFIX = "pol:"
ERRORS_PER_FILE_MAX = 1_000
YEAR_MIN, YEAR_MAX = 2000, 2999
_TRUE, _FALSE = {"true", "yes", "1", "y"}, {"false", "no", "0", "n"}


@dataclass(frozen=True, slots=True)
class RowError:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Row:
    file: str
    line: int
    event: Event


@dataclass
class FileResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    duplicates: int = 0  # identical rows inside the file (same event id, same payload)
    rows_read: int = 0

    @property
    def accepted(self) -> bool:
        return not self.errors

    def error(self, line: int, reason: str) -> None:
        if len(self.errors) < ERRORS_PER_FILE_MAX:
            self.errors.append(RowError(self.name, line, reason))


def _when(value: object, name: str) -> str:
    """A date or an RFC 3339 instant -> canonical UTC text."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            at = datetime.combine(date.fromisoformat(value.strip()), time(0), tzinfo=timezone.utc)
        except ValueError as exc:
            raise EventError(f"not a date: {value!r}", name) from exc
    else:
        at = parse_time(value, name)
    if not YEAR_MIN <= at.year <= YEAR_MAX:
        raise EventError(f"year {at.year} is outside {YEAR_MIN}..{YEAR_MAX}", name)
    return format_time(at)


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise EventError(f"expected true or false, got {value!r}", "opted_out")


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def row_event(raw: dict) -> Event:
    """One row (CSV strings or JSON values) -> a validated event. Raises EventError."""
    kind = raw.get("type")
    kind = kind.strip() if isinstance(kind, str) else kind
    if kind not in FIELDS_BY_TYPE:
        raise EventError(f"unknown type {kind!r} (one of {', '.join(FIELDS_BY_TYPE)})", "type")
    allowed = set(COMMON) | set(FIELDS_BY_TYPE[kind])
    for name, value in raw.items():
        if name not in COLUMNS:
            raise EventError("unknown field", name)
        if name not in allowed and _present(value):
            raise EventError(f"is not a field of {kind}", name)
    out: dict = {"type": kind}
    for name in ("engineer_id", "grant_id", "team_id", "kind"):
        if name in FIELDS_BY_TYPE[kind] or name == "engineer_id":
            value = raw.get(name)
            if _present(value):
                out[name] = value.strip() if isinstance(value, str) else value
    out["effective_at"] = _when(raw.get("effective_at"), "effective_at")
    if kind == "grant_issued" and str(out.get("grant_id", "")).startswith(RESERVED_GRANT_PREFIX):
        # Those ids belong to `grants issue` (labels.py); one imported here would
        # count as a policy grant. Revoking one is fine.
        raise EventError(f"ids starting with {RESERVED_GRANT_PREFIX!r} are reserved for policy grants", "grant_id")
    try:
        if kind == "grant_issued":
            out["amount_nanos"] = nanos_field(raw, "amount_usd", "amount_nanos", required=True)
            out.setdefault("kind", DEFAULT_GRANT_KIND)
            out["expires_at"] = _when(raw["expires_at"], "expires_at") if _present(raw.get("expires_at")) else None
        elif kind == "cash_compensation":
            out["annual_cash_nanos"] = nanos_field(raw, "annual_cash_usd", "annual_cash_nanos", required=True,
                                                   allow_zero=True)
    except AmountError as exc:
        raise EventError(str(exc), "amount") from exc
    if kind == "leaderboard_privacy":
        if not _present(raw.get("opted_out")):
            raise EventError("missing", "opted_out")
        out["opted_out"] = _flag(raw["opted_out"])
    given = raw.get("event_id")
    if _present(given):
        out["event_id"] = given.strip() if isinstance(given, str) else given
    else:
        text = json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        out["event_id"] = "hr:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return event_from_dict(out)


def _records(text: str, name: str, result: FileResult) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, dict) per row; format from the name (.csv / .jsonl), else sniffed."""
    lower = name.lower()
    is_csv = lower.endswith(".csv") or not (lower.endswith((".jsonl", ".ndjson", ".json"))
                                            or text.lstrip().startswith("{"))
    if is_csv:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in reader.fieldnames or []]
        unknown = [h for h in header if h not in COLUMNS]
        missing = [h for h in ("type", "engineer_id", "effective_at") if h not in header]
        if unknown or missing:
            result.error(1, (f"unknown column(s) {', '.join(unknown)}; " if unknown else "")
                         + (f"missing column(s) {', '.join(missing)}; " if missing else "")
                         + f"columns are {', '.join(COLUMNS)}")
            return
        reader.fieldnames = header
        for record in reader:
            if None in record:
                result.error(reader.line_num, "more fields than the header")
                continue
            if all(not (v or "").strip() for v in record.values()):
                continue
            yield reader.line_num, record
        return
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            result.error(line, f"invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            result.error(line, f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield line, obj


def parse_file(text: str, name: str, on_row: Callable[[], None] | None = None) -> FileResult:
    result = FileResult(name)
    seen: dict[str, tuple[int, Event]] = {}
    for line, record in _records(text, name, result):
        result.rows_read += 1
        if on_row is not None:
            on_row()
        try:
            event = row_event(record)
        except EventError as exc:
            result.error(line, str(exc))
            continue
        first = seen.get(event.event_id)
        if first is not None:
            if first[1] != event:
                result.error(line, f"event_id {event.event_id!r} also on line {first[0]} with other values")
            else:
                result.duplicates += 1
            continue
        seen[event.event_id] = (line, event)
        result.rows.append(Row(name, line, event))
    return result


@dataclass
class Known:
    """What the import may refer to: engineers and grants (engineer, grant_id) -> event id."""

    engineers: set[str] = field(default_factory=set)
    grants: dict[tuple[str, str], str] = field(default_factory=dict)

    def learn(self, event: Event) -> None:
        self.engineers.add(event.engineer_id)
        if isinstance(event, GrantIssued):
            self.grants.setdefault((event.engineer_id, event.grant_id), event.event_id)


def check_references(result: FileResult, known: Known) -> None:
    """Rows that need a known engineer or grant; on success `known` learns the file.
    A revocation may name a grant issued earlier in the same file."""
    local = Known(set(known.engineers), dict(known.grants))
    for row in result.rows:
        e = row.event
        if isinstance(e, GrantRevoked) and (e.engineer_id, e.grant_id) not in local.grants:
            result.error(row.line, f"grant_id: {e.grant_id!r} was never issued to {e.engineer_id!r} "
                                   "(not in the history nor earlier in the import)")
        elif e.type in ("engineer_offboarded", "grant_revoked") and e.engineer_id not in local.engineers:
            result.error(row.line, f"engineer_id: {e.engineer_id!r} is unknown (not on the roster, "
                                   "not in the history, not earlier in the import)")
        elif isinstance(e, GrantIssued):
            other = local.grants.get((e.engineer_id, e.grant_id))
            if other is not None and other != e.event_id:
                result.error(row.line, f"grant_id: {e.grant_id!r} of {e.engineer_id!r} is already used by "
                                       f"event {other!r}")
        local.learn(e)
    if result.accepted:
        known.engineers, known.grants = local.engineers, local.grants


__all__ = ["FileResult", "Known", "Row", "RowError", "check_references", "parse_file", "row_event",
           "HR_EVENT_TYPES"]
