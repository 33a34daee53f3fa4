"""Generic JSON Lines in the canonical usage format (`event_to_json` output).

Each line is one canonical `usage` event, validated by
`compstream.domain.events.event_from_dict`. The row keeps its `event_id`
(its identity is that id), its `engineer_id` (agent ids are still resolved to
their owner through the identity map's `owners`), and its cost: a null
`cost_nanos` without `unpriced_reason` is priced with genai-prices. Token
fields follow the canonical convention (`input_tokens` includes cache tokens).
"""

from __future__ import annotations

import json
from decimal import Decimal

from compstream.domain.events import EventError, Usage, event_from_dict
from compstream.ingest import jsonio
from compstream.ingest.model import AdapterOutput, Location, Rejection, RowError, SourceRow, TokenCounts

KNOWN_PROVIDERS = {"openai", "anthropic", "google"}


def parse(text: str, name: str) -> AdapterOutput:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        loc = Location(name, number)
        if len(line) > jsonio.LINE_BYTES_MAX:
            yield Rejection(loc, "line too long")
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Rejection(loc, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        try:
            if isinstance(raw, dict) and "type" not in raw:
                raw = {**raw, "type": "usage"}
            event = event_from_dict(raw)
            if not isinstance(event, Usage):
                raise RowError(f"not a usage event (type {event.type!r})")
            yield _row(event, loc)
        except (EventError, RowError) as exc:
            yield Rejection(loc, str(exc))


def _row(event: Usage, loc: Location) -> SourceRow:
    tokens = TokenCounts(
        input=event.input_tokens,
        output=event.output_tokens,
        cache_read=event.cache_read_tokens,
        cache_write=event.cache_write_tokens,
    )
    return SourceRow(
        source="jsonl",
        provider=event.provider,
        model=event.model,
        occurred_at=event.occurred_at,
        identity=(("kind", "canonical"), ("event_id", event.event_id)),
        principals=(),
        tokens=tokens,
        location=loc,
        provider_cost_usd=None if event.cost_nanos is None else Decimal(event.cost_nanos) / Decimal(10**9),
        engineer_id=event.engineer_id,
        event_id=event.event_id,
        corrects_event_id=event.corrects_event_id,
        unpriced_reason=event.unpriced_reason,
        price_version=event.price_version,
    )
