"""Provider usage ingestion: exports -> priced, attributed, canonical `Usage` events.

Pure adapters (`openai`, `anthropic`, `gcp`, `generic`) read one export each
and yield `SourceRow`s / `Rejection`s / `Skipped`; `pipeline.Converter` turns
rows into events using `identity` (who), `pricing` (how much), `ids`
(deterministic event ids) and `journal` (what was booked before, for
restatements); `publish` delivers them. See each module's docstring.

Canonical token convention: `input_tokens` counts ALL input tokens, cache
reads and cache writes included; `cache_read_tokens`/`cache_write_tokens` are
subsets of it (OpenAI and genai-prices count this way; Anthropic's split
counts are summed).
"""

from __future__ import annotations

from typing import Callable

from compstream.ingest import anthropic, gcp, generic, openai
from compstream.ingest.model import AdapterOutput

Adapter = Callable[[str, str], AdapterOutput]

ADAPTERS: dict[str, Adapter] = {
    "openai": openai.parse_usage,
    "openai-costs": openai.parse_costs,
    "anthropic": anthropic.parse_messages,
    "claude-code": anthropic.parse_claude_code,
    "gcp": gcp.parse,
    "jsonl": generic.parse,
}

__all__ = ["ADAPTERS", "Adapter"]
