"""Anthropic Admin API: messages usage report and Claude Code usage report.

Messages (`GET /v1/organizations/usage_report/messages`): pages with `data`
buckets (`starting_at`, `ending_at` RFC 3339) whose `results` hold
`uncached_input_tokens`, `cache_creation.ephemeral_5m_input_tokens`,
`cache_creation.ephemeral_1h_input_tokens`, `cache_read_input_tokens`,
`output_tokens`, `server_tool_use.web_search_requests`, and the grouping
fields `api_key_id`, `workspace_id`, `model`, `service_tier` (plus
`context_window`, `inference_geo` when grouped by them). Anthropic reports
input split by kind; canonical `input_tokens` is their sum (uncached + cache
read + cache creation). No cost is reported here: genai-prices prices it,
with the 1-hour cache writes priced at their own rate.

Claude Code (`GET /v1/organizations/usage_report/claude_code`): records per
`date` and `actor` (`user_actor` with `email_address`, or `api_actor` with
`api_key_name`), with `model_breakdown[]` of `{model, tokens: {input, output,
cache_read, cache_creation}, estimated_cost: {amount, currency}}`. The
estimated cost is in minor units (cents for USD) and is used as the
provider-reported cost.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from compstream.domain.events import EventError, parse_time
from compstream.ingest import jsonio
from compstream.ingest.model import AdapterOutput, Location, RowError, SourceRow, TokenCounts
from compstream.ingest.pages import bucket_rows, entry_rows
from compstream.ingest.pricing import check_currency

# Service tiers that map onto a genai-prices price variant.
_TIER_CONTEXT = {
    "batch": ("processing", "batch"),
    "priority": ("service_tier", "priority"),
    "priority_on_demand": ("service_tier", "priority"),
    "flex": ("service_tier", "flex"),
}


def _time(value: Any, name: str) -> datetime:
    try:
        return parse_time(value, name)
    except EventError as exc:
        raise RowError(str(exc)) from exc


def parse_messages(text: str, name: str) -> AdapterOutput:
    return bucket_rows(text, name, "report", ("starting_at", "ending_at"), _time, _message_row)


def _message_row(result: Any, start: datetime, end: datetime, loc: Location) -> SourceRow:
    if not isinstance(result, dict):
        raise RowError("result is not a JSON object")
    model = jsonio.opt_str(result, "model")
    if not model:
        raise RowError("result has no 'model': export with group_by[]=model so rows can be priced")
    uncached = jsonio.tokens(result, "uncached_input_tokens", required=True)
    cache_read = jsonio.tokens(result, "cache_read_input_tokens")
    creation = result.get("cache_creation")
    if creation is None:
        # Older/flattened shape.
        write_5m = jsonio.tokens(result, "cache_creation_5m_input_tokens")
        write_1h = jsonio.tokens(result, "cache_creation_1h_input_tokens")
    elif isinstance(creation, dict):
        write_5m = jsonio.tokens(creation, "ephemeral_5m_input_tokens")
        write_1h = jsonio.tokens(creation, "ephemeral_1h_input_tokens")
    else:
        raise RowError("field 'cache_creation' must be an object")
    tool_use = result.get("server_tool_use") or {}
    if not isinstance(tool_use, dict):
        raise RowError("field 'server_tool_use' must be an object")
    web_searches = jsonio.tokens(tool_use, "web_search_requests")
    tokens = TokenCounts(
        input=uncached + cache_read + write_5m + write_1h,
        output=jsonio.tokens(result, "output_tokens", required=True),
        cache_read=cache_read,
        cache_write=write_5m + write_1h,
        cache_write_1h=write_1h,
        web_searches=web_searches,
    )
    api_key_id = jsonio.opt_str(result, "api_key_id")
    workspace_id = jsonio.opt_str(result, "workspace_id")
    service_tier = jsonio.opt_str(result, "service_tier")
    context: tuple[tuple[str, str], ...] = (_TIER_CONTEXT[service_tier],) if service_tier in _TIER_CONTEXT else ()
    context_window = jsonio.opt_str(result, "context_window")
    if context_window:
        context += (("context_window", context_window),)
    principals = tuple(
        (kind, value) for kind, value in (("api_key_id", api_key_id), ("workspace_id", workspace_id)) if value
    )
    return SourceRow(
        source="anthropic",
        provider="anthropic",
        model=model,
        occurred_at=start,
        identity=(
            ("kind", "anthropic.usage_report.messages"),
            ("starting_at", start),
            ("ending_at", end),
            ("api_key_id", api_key_id),
            ("workspace_id", workspace_id),
            ("model", model),
            ("service_tier", service_tier),
            ("context_window", context_window),
            ("inference_geo", jsonio.opt_str(result, "inference_geo")),
        ),
        principals=principals,
        tokens=tokens,
        location=loc,
        price_context=context,
    )


def parse_claude_code(text: str, name: str) -> AdapterOutput:
    return entry_rows(text, name, "report", "model_breakdown",
                      lambda record: (_claude_code_header(record), jsonio.field(record, "model_breakdown")),
                      _claude_code_row)


def _claude_code_header(record: Any) -> dict:
    if not isinstance(record, dict):
        raise RowError("record is not a JSON object")
    raw_date = jsonio.req_str(record, "date")
    if len(raw_date) == 10:
        try:
            day = datetime.strptime(raw_date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError as exc:
            raise RowError(f"field 'date' is not YYYY-MM-DD: {raw_date!r}") from exc
    else:
        day = _time(raw_date, "date")
    actor = jsonio.field(record, "actor")
    if not isinstance(actor, dict):
        raise RowError("field 'actor' must be an object")
    actor_type = jsonio.req_str(actor, "type")
    if actor_type == "user_actor":
        principal = ("email", jsonio.req_str(actor, "email_address").strip().lower())
    elif actor_type == "api_actor":
        principal = ("api_key_name", jsonio.req_str(actor, "api_key_name"))
    else:
        raise RowError(f"unknown actor type {actor_type!r}")
    return {
        "date": day,
        "actor_type": actor_type,
        "principal": principal,
        "customer_type": jsonio.opt_str(record, "customer_type"),
        "terminal_type": jsonio.opt_str(record, "terminal_type"),
        "organization_id": jsonio.opt_str(record, "organization_id"),
    }


def _claude_code_row(header: dict, entry: Any, loc: Location) -> SourceRow:
    if not isinstance(entry, dict):
        raise RowError("model_breakdown entry is not a JSON object")
    model = jsonio.req_str(entry, "model")
    raw_tokens = jsonio.field(entry, "tokens")
    if not isinstance(raw_tokens, dict):
        raise RowError("field 'tokens' must be an object")
    uncached = jsonio.tokens(raw_tokens, "input", required=True)
    cache_read = jsonio.tokens(raw_tokens, "cache_read")
    cache_creation = jsonio.tokens(raw_tokens, "cache_creation")
    tokens = TokenCounts(
        input=uncached + cache_read + cache_creation,
        output=jsonio.tokens(raw_tokens, "output", required=True),
        cache_read=cache_read,
        cache_write=cache_creation,
    )
    cost = None
    estimated = entry.get("estimated_cost")
    if estimated is not None:
        if not isinstance(estimated, dict):
            raise RowError("field 'estimated_cost' must be an object")
        check_currency(estimated.get("currency"), "estimated_cost.currency")
        cents = jsonio.decimal(jsonio.field(estimated, "amount"), "estimated_cost.amount")
        if cents < 0:
            raise RowError(f"negative estimated_cost.amount {cents}")
        cost = cents / Decimal(100)  # minor units (cents) -> dollars, exact
    kind, value = header["principal"]
    return SourceRow(
        source="claude-code",
        provider="anthropic",
        model=model,
        occurred_at=header["date"],
        identity=(
            ("kind", "anthropic.usage_report.claude_code"),
            ("date", header["date"]),
            ("organization_id", header["organization_id"]),
            ("actor_type", header["actor_type"]),
            (kind, value),
            ("customer_type", header["customer_type"]),
            ("terminal_type", header["terminal_type"]),
            ("model", model),
        ),
        principals=((kind, value),),
        tokens=tokens,
        location=loc,
        provider_cost_usd=cost,
    )
