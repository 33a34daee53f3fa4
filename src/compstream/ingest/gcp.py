"""Google Gemini / Vertex AI usage from the Cloud Billing export.

Input rows as exported (standard usage cost export), either:
- JSON: nested objects (`service.description`, `sku.description`,
  `project.id`, `usage.amount`, ...), as a JSON array or JSON Lines
  (`bq extract --destination_format NEWLINE_DELIMITED_JSON`);
- CSV: one column per leaf with dotted names (`service.description`,
  `sku.description`, `usage_start_time`, `project.id`, `labels`, `cost`,
  `currency`, `usage.amount`, `usage.unit`, `credits`, `export_time`);
  `labels` and `credits` cells hold the JSON arrays the export uses
  (`[{"key": "engineer", "value": "alice"}]`, `[{"name": ..., "amount": -0.1}]`).

Only rows of the AI services (`Vertex AI`, `Gemini API`, `Generative Language
API` by default) are usage; other services and tax/adjustment rows are skipped
and counted, never rejected. The cost booked is the provider's `cost` plus
`credits` (credits are negative), in USD only.

Tokens: the SKU description says the direction (input / output / cached
input); `usage.amount` in `count`/`token(s)` units is the token count
(rounded half-even to an integer if the export gives a fraction). SKUs that
are not token-metered (e.g. cache storage, grounding requests) keep their cost
with zero tokens.

Restatements: billing rows have no id; a row's identity is (billing account,
service, SKU, usage window, project, labels, location, cost type). Within one
export the row with the latest `export_time` for an identity supersedes the
others; across ingests the journal compares `export_time` and numbers.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Iterator, Literal, overload

from compstream.domain.events import EventError, parse_time
from compstream.ingest import jsonio
from compstream.ingest.ids import identity_key
from compstream.ingest.model import (
    AdapterItem,
    AdapterOutput,
    IngestError,
    Location,
    Rejection,
    RowError,
    Skipped,
    SourceRow,
    TokenCounts,
)
from compstream.ingest.pricing import check_currency

AI_SERVICES = frozenset({"vertex ai", "gemini api", "generative language api"})
NON_USAGE_COST_TYPES = frozenset({"tax", "adjustment", "rounding_error"})
TOKEN_UNITS = frozenset({"count", "token", "tokens", "requests-tokens"})
# Bound on distinct identities held while superseding within one export.
SUPERSEDE_IDENTITIES_MAX = 2_000_000

_MODEL_RE = re.compile(
    r"gemini[\s-]+(\d+(?:\.\d+)?)[\s-]+(flash[\s-]+lite|flash-lite|flash|pro|ultra|nano)",
    re.IGNORECASE,
)


def _get(row: dict, dotted: str) -> Any:
    if dotted in row:
        return row[dotted]
    node: Any = row
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@overload
def _str(row: dict[str, Any], dotted: str, required: Literal[True]) -> str: ...


@overload
def _str(row: dict[str, Any], dotted: str, required: bool = False) -> str | None: ...


def _str(row: dict[str, Any], dotted: str, required: bool = False) -> str | None:
    value = _get(row, dotted)
    if value is None or value == "":
        if required:
            raise RowError(f"missing field {dotted!r}")
        return None
    if not isinstance(value, str):
        raise RowError(f"field {dotted!r} must be a string, got {value!r}")
    return value


def _time(row: dict, dotted: str) -> datetime:
    value = _str(row, dotted, required=True)
    # BigQuery CSV renders timestamps as `2026-03-01 08:00:00 UTC`.
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4].replace(" ", "T") + "Z"
    try:
        return parse_time(text, dotted)
    except EventError as exc:
        raise RowError(str(exc)) from exc


def _json_cell(value: Any, name: str) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            return jsonio.loads(value)
        except (json.JSONDecodeError, ValueError) as exc:
            raise RowError(f"field {name!r} is not valid JSON") from exc
    return value


def _labels(row: dict) -> tuple[tuple[str, str], ...]:
    raw = _json_cell(_get(row, "labels"), "labels")
    if raw is None:
        return ()
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        raw = [{"key": k, "value": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise RowError("field 'labels' must be a list of {key, value}")
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise RowError("field 'labels' must be a list of {key, value}")
        value = item.get("value")
        pairs.append((item["key"], "" if value is None else str(value)))
    return tuple(sorted(pairs))


def _credits(row: dict) -> Decimal:
    raw = _json_cell(_get(row, "credits"), "credits")
    if raw is None:
        return Decimal(0)
    if not isinstance(raw, list):
        raise RowError("field 'credits' must be a list of {name, amount}")
    total = Decimal(0)
    for item in raw:
        if not isinstance(item, dict) or "amount" not in item:
            raise RowError("field 'credits' must be a list of {name, amount}")
        total += jsonio.decimal(item["amount"], "credits.amount")
    return total


def model_from_sku(sku: str) -> str | None:
    match = _MODEL_RE.search(sku)
    if not match:
        return None
    variant = re.sub(r"[\s-]+", "-", match.group(2).lower())
    return f"gemini-{match.group(1)}-{variant}"


def _tokens(sku: str, unit: str | None, amount: Any) -> TokenCounts:
    lowered = sku.lower()
    if unit is None or unit.strip().lower() not in TOKEN_UNITS or "storage" in lowered:
        return TokenCounts()
    count_dec = jsonio.decimal(amount, "usage.amount") if amount not in (None, "") else Decimal(0)
    if count_dec < 0:
        raise RowError(f"negative usage.amount {count_dec}")
    count = int(count_dec.to_integral_value(rounding=ROUND_HALF_EVEN))
    if "output" in lowered:
        return TokenCounts(output=count)
    if "cache" in lowered or "cached" in lowered:
        return TokenCounts(input=count, cache_read=count)
    if "input" in lowered:
        return TokenCounts(input=count)
    return TokenCounts()


def _rows(text: str, name: str) -> Iterator[tuple[dict, Location] | Rejection]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        for item in jsonio.json_documents(text, name):
            if item[0] is None:
                yield Rejection(item[1], item[2])  # type: ignore[misc]  # item[0] None: the 3-tuple
            elif not isinstance(item[0], dict):
                yield Rejection(item[1], "billing row is not a JSON object")
            else:
                yield item[0], item[1]
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        yield Rejection(Location(name, 1), "empty CSV (no header)")
        return
    missing = [col for col in ("service.description", "sku.description", "cost", "currency")
               if col not in reader.fieldnames]
    if missing:
        yield Rejection(Location(name, 1), f"CSV header lacks columns {missing}")
        return
    try:
        for record in reader:
            # reader.line_num is the physical line the record ended on.
            location = Location(name, reader.line_num)
            if None in record:
                yield Rejection(location, "more cells than header columns")
                continue
            if any(value is None for value in record.values()):
                yield Rejection(location, "fewer cells than header columns")
                continue
            yield record, location
    except csv.Error as exc:
        yield Rejection(Location(name, reader.line_num), f"malformed CSV: {exc}")


def _convert(row: dict, loc: Location, services: frozenset[str]) -> AdapterItem:
    service = _str(row, "service.description", required=True)
    if service.strip().lower() not in services:
        return Skipped(loc, f"service {service!r} is not an AI service")
    cost_type = _str(row, "cost_type")
    if cost_type and cost_type.lower() in NON_USAGE_COST_TYPES:
        return Skipped(loc, f"cost_type {cost_type!r} is not usage")
    sku = _str(row, "sku.description", required=True)
    check_currency(_get(row, "currency"), "currency")
    cost_raw = _get(row, "cost")
    if cost_raw is None or cost_raw == "":
        raise RowError("missing field 'cost'")
    net = jsonio.decimal(cost_raw, "cost") + _credits(row)
    if net < 0:
        raise RowError(f"negative net cost {net} (cost + credits); refunds are not usage")
    start = _time(row, "usage_start_time")
    end = _time(row, "usage_end_time")
    if end < start:
        raise RowError("usage_end_time is before usage_start_time")
    export_raw = _get(row, "export_time")
    export_time = _time(row, "export_time") if export_raw not in (None, "") else None
    project_id = _str(row, "project.id")
    labels = _labels(row)
    tokens = _tokens(sku, _str(row, "usage.unit"), _get(row, "usage.amount"))
    model = model_from_sku(sku) or sku
    principals = tuple((f"label:{key}", value) for key, value in labels if value)
    if project_id:
        principals += (("project_id", project_id),)
    return SourceRow(
        source="gcp",
        provider="google",
        model=model,
        occurred_at=start,
        identity=(
            ("kind", "gcp.billing_export"),
            ("billing_account_id", _str(row, "billing_account_id")),
            ("service", _str(row, "service.id") or service),
            ("sku", _str(row, "sku.id") or sku),
            ("usage_start_time", start),
            ("usage_end_time", end),
            ("project_id", project_id),
            ("labels", [list(pair) for pair in labels]),
            ("location", _str(row, "location.location") or _str(row, "location.region")),
            ("cost_type", cost_type),
        ),
        principals=principals,
        tokens=tokens,
        location=loc,
        provider_cost_usd=net,
        revision_marker=None if export_time is None else export_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


def parse(text: str, name: str, services: frozenset[str] = AI_SERVICES) -> AdapterOutput:
    """All rows of one export; for each identity only the latest `export_time` survives.

    Superseding needs the whole export, so rows are held per identity (bounded
    by SUPERSEDE_IDENTITIES_MAX) and emitted in first-seen order.
    """
    latest: dict[str, SourceRow] = {}
    for item in _rows(text, name):
        if isinstance(item, Rejection):
            yield item
            continue
        row, loc = item
        try:
            converted = _convert(row, loc, services)
        except RowError as exc:
            yield Rejection(loc, str(exc))
            continue
        if not isinstance(converted, SourceRow):
            yield converted
            continue
        key = identity_key(converted.identity)
        held = latest.get(key)
        if held is None:
            if len(latest) >= SUPERSEDE_IDENTITIES_MAX:
                raise IngestError(
                    f"{name}: more than {SUPERSEDE_IDENTITIES_MAX} distinct billing rows; split the export")
            latest[key] = converted
            continue
        # Later export_time wins; on a tie the later row in the file wins.
        if (converted.revision_marker or "") >= (held.revision_marker or ""):
            latest[key] = converted
            yield Skipped(held.location,
                          f"superseded by {converted.location} (export_time {converted.revision_marker})")
        else:
            yield Skipped(loc, f"superseded by {held.location} (export_time {held.revision_marker})")
    yield from latest.values()
