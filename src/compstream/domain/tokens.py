"""The one definition of "tokens", for leaderboards, statements and the org report.

Canonical usage events follow the OpenAI / genai-prices convention that ingest
enforces (ingest/model.py `TokenCounts`): `input_tokens` is ALL input, cache
reads and cache writes included; `cache_read_tokens` and `cache_write_tokens`
are subsets of it, kept for detail and pricing. Hence

    tokens = input_tokens + output_tokens

counts every cache token exactly once (inside input). Adding the two cache
fields on top would count them twice (they were 25 % of all tokens in one
scenario). Producers that publish events themselves must follow the same
convention (Anthropic reports cache tokens *beside* input; ingest adds them
in). Corrections carry deltas of each field, so the sum stays exact.
See docs/leaderboards.md.
"""

from __future__ import annotations

# The same definition as SQL over the history's `events` columns.
TOKENS_SQL = "input_tokens + output_tokens"


def tokens(input_tokens: int, output_tokens: int) -> int:
    """The tokens metric of a usage (or of summed usage): input (cache included) + output."""
    return input_tokens + output_tokens
