"""OpenAI organization Usage API (completions) and Costs API pages.

Input: the JSON pages exactly as the API returns them — one page object
(`{"object": "page", "data": [buckets], "has_more", "next_page"}`), a JSON
array of pages, or JSON Lines with one page per line. Each bucket has
`start_time`/`end_time` (unix seconds) and `results`.

Usage results: `input_tokens` already includes `input_cached_tokens` (and
audio) per the API reference, which is the canonical convention, so it is
kept as is. Usage rows carry no cost; they are priced by genai-prices.

Costs results: `amount.value` in `amount.currency` (lowercase ISO code, only
`usd` accepted), `line_item` (e.g. "gpt-4o-2024-08-06, input"), `project_id`.
They become zero-token usage events carrying the provider-reported cost,
attributed by project. Ingest either the usage export (per key/user, priced by
genai-prices) or the costs export (per project, as billed) for a period, not
both: the two describe the same spend.

Always export with the same `group_by` set: the identity of a row is the set of
grouping fields it carries, so regrouping the same period yields new ids.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from compstream.ingest import jsonio
from compstream.ingest.model import AdapterOutput, Location, RowError, SourceRow, TokenCounts
from compstream.ingest.pages import bucket_rows
from compstream.ingest.pricing import check_currency


def _unix(value: Any, name: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(f"field {name!r} must be unix seconds (integer), got {value!r}")
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise RowError(f"field {name!r} is out of range: {value}") from exc


def parse_usage(text: str, name: str) -> AdapterOutput:
    return bucket_rows(text, name, "usage", ("start_time", "end_time"), _unix, _usage_row)


def _usage_row(result: Any, start: datetime, end: datetime, loc: Location) -> SourceRow:
    if not isinstance(result, dict):
        raise RowError("result is not a JSON object")
    model = jsonio.opt_str(result, "model")
    if not model:
        raise RowError("result has no 'model': export with group_by=model so rows can be priced")
    project_id = jsonio.opt_str(result, "project_id")
    user_id = jsonio.opt_str(result, "user_id")
    api_key_id = jsonio.opt_str(result, "api_key_id")
    service_tier = jsonio.opt_str(result, "service_tier")
    batch = result.get("batch")
    if batch is not None and not isinstance(batch, bool):
        raise RowError(f"field 'batch' must be a boolean or null, got {batch!r}")
    tokens = TokenCounts(
        input=jsonio.tokens(result, "input_tokens", required=True),
        output=jsonio.tokens(result, "output_tokens", required=True),
        cache_read=jsonio.tokens(result, "input_cached_tokens"),
        input_audio=jsonio.tokens(result, "input_audio_tokens"),
        output_audio=jsonio.tokens(result, "output_audio_tokens"),
    )
    jsonio.tokens(result, "num_model_requests")  # validated, not booked
    context: list[tuple[str, str]] = []
    if batch:
        context.append(("processing", "batch"))
    if service_tier and service_tier not in ("default", "auto"):
        context.append(("service_tier", service_tier))
    principals = tuple(
        (kind, value)
        for kind, value in (("api_key_id", api_key_id), ("user_id", user_id), ("project_id", project_id))
        if value
    )
    return SourceRow(
        source="openai",
        provider="openai",
        model=model,
        occurred_at=start,
        identity=(
            ("kind", "openai.usage.completions"),
            ("start_time", start),
            ("end_time", end),
            ("project_id", project_id),
            ("user_id", user_id),
            ("api_key_id", api_key_id),
            ("model", model),
            ("batch", batch),
            ("service_tier", service_tier),
        ),
        principals=principals,
        tokens=tokens,
        location=loc,
        price_context=tuple(context),
    )


def parse_costs(text: str, name: str) -> AdapterOutput:
    return bucket_rows(text, name, "usage", ("start_time", "end_time"), _unix, _cost_row)


def _cost_row(result: Any, start: datetime, end: datetime, loc: Location) -> SourceRow:
    if not isinstance(result, dict):
        raise RowError("result is not a JSON object")
    amount = jsonio.field(result, "amount")
    if not isinstance(amount, dict):
        raise RowError("field 'amount' must be an object with 'value' and 'currency'")
    check_currency(amount.get("currency"), "amount.currency")
    value = jsonio.decimal(jsonio.field(amount, "value"), "amount.value")
    if value < 0:
        raise RowError(f"negative cost amount.value {value}")
    line_item = jsonio.opt_str(result, "line_item")
    project_id = jsonio.opt_str(result, "project_id")
    model = (line_item.split(",")[0].strip() if line_item else "") or "openai-costs"
    return SourceRow(
        source="openai-costs",
        provider="openai",
        model=model,
        occurred_at=start,
        identity=(
            ("kind", "openai.costs"),
            ("start_time", start),
            ("end_time", end),
            ("project_id", project_id),
            ("line_item", line_item),
        ),
        principals=(("project_id", project_id),) if project_id else (),
        tokens=TokenCounts(),
        location=loc,
        provider_cost_usd=value,
    )
