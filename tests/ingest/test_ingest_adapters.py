"""Adapters against fixtures built from the providers' documented shapes."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from compstream.ingest import ids
from compstream.ingest.gcp import model_from_sku

from .conftest import adapt

MAR1 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def test_openai_usage_pages_and_cache_tokens():
    rows, rejections, skipped = adapt("openai", "openai_usage_page1.json", "openai_usage_page2.json")
    assert not rejections and not skipped
    assert len(rows) == 5  # two pages, three buckets' results
    first = rows[0]
    assert first.occurred_at == MAR1
    assert first.model == "gpt-4o-2024-08-06"
    # input_tokens already includes the cached tokens (canonical convention)
    assert (first.tokens.input, first.tokens.cache_read, first.tokens.output) == (1_200_000, 400_000, 300_000)
    assert first.principals == (
        ("api_key_id", "key_alice_laptop"), ("user_id", "user-alice"), ("project_id", "proj_platform"))
    batch = rows[1]
    assert ("processing", "batch") in batch.price_context
    assert dict(batch.identity)["batch"] is True
    assert str(first.location).endswith("(data[0].results[0])")


def test_openai_costs_keep_exact_decimal_amounts():
    rows, rejections, _ = adapt("openai-costs", "openai_costs.json")
    assert not rejections
    assert rows[0].provider_cost_usd == Decimal("12.3456789012")
    assert rows[0].model == "gpt-4o-2024-08-06"
    assert rows[2].model == "openai-costs"  # no line item
    assert rows[0].tokens.input == 0


def test_anthropic_messages_split_input_and_cache_ttl():
    rows, rejections, _ = adapt("anthropic", "anthropic_messages.json")
    assert not rejections
    sonnet = rows[0]
    t = sonnet.tokens
    assert t.input == 150_000 + 1_000_000 + 200_000 + 100_000
    assert (t.cache_read, t.cache_write, t.cache_write_1h, t.web_searches) == (1_000_000, 300_000, 100_000, 12)
    assert ("context_window", "0-200k") in sonnet.price_context
    assert ("processing", "batch") in rows[1].price_context
    assert sonnet.principals == (("api_key_id", "apikey_01Carol"), ("workspace_id", "wrkspc_01Platform"))


def test_claude_code_estimated_cost_is_in_cents():
    rows, rejections, _ = adapt("claude-code", "claude_code.json")
    assert not rejections
    assert len(rows) == 3
    assert rows[0].provider_cost_usd == Decimal("10.25")
    assert rows[1].provider_cost_usd == Decimal("0.155")
    assert rows[0].principals == (("email", "alice@example.com"),)
    assert rows[2].principals == (("api_key_name", "ci-review-bot"),)
    assert rows[0].tokens.input == 100_000 + 10_000 + 5_000


def test_gcp_csv_supersedes_within_export_and_skips_non_usage():
    rows, rejections, skipped = adapt("gcp", "gcp_billing.csv")
    assert not rejections
    reasons = sorted(s.reason for s in skipped)
    assert any("superseded" in r for r in reasons)
    assert any("Compute Engine" in r for r in reasons)
    assert any("tax" in r for r in reasons)
    assert len(rows) == 4
    output = next(r for r in rows if r.tokens.output)
    # later export_time wins: 250k tokens, 2.5 - 0.5 credit
    assert output.tokens.output == 250_000
    assert output.provider_cost_usd == Decimal("2.0")
    assert output.revision_marker.startswith("2026-03-01T12:00:00")
    cached = next(r for r in rows if r.tokens.cache_read)
    assert cached.model == "gemini-2.5-flash"
    assert cached.principals[0] == ("label:agent", "nightly-evals")


def test_gcp_json_lines_match_csv_identities():
    csv_rows, _, _ = adapt("gcp", "gcp_billing.csv")
    json_rows, rejections, _ = adapt("gcp", "gcp_billing.jsonl")
    assert not rejections
    assert [ids.event_id("gcp", r.identity) for r in csv_rows] == [ids.event_id("gcp", r.identity) for r in json_rows]
    assert [r.tokens for r in csv_rows] == [r.tokens for r in json_rows]


def test_model_from_sku():
    assert model_from_sku("Gemini 2.5 Pro Text Input - Predictions") == "gemini-2.5-pro"
    assert model_from_sku("Gemini 2.0 Flash Lite Text Output") == "gemini-2.0-flash-lite"
    assert model_from_sku("Generate content input token count Gemini 2.5 Flash short input text") == "gemini-2.5-flash"
    assert model_from_sku("N2 Instance Core") is None


def test_generic_jsonl_keeps_ids_and_engineer():
    rows, rejections, _ = adapt("jsonl", "canonical_usage.jsonl")
    assert not rejections
    assert [r.event_id for r in rows] == ["internal:run-0001", "internal:run-0002", "internal:run-0003"]
    assert rows[1].engineer_id == "agent:triage"
    assert rows[1].provider_cost_usd == Decimal("0.123456789")


def test_event_ids_are_deterministic_and_identity_sensitive():
    a, _, _ = adapt("openai", "openai_usage_page1.json")
    b, _, _ = adapt("openai", "openai_usage_page1.json")
    ids_a = [ids.event_id(r.source, r.identity) for r in a]
    assert ids_a == [ids.event_id(r.source, r.identity) for r in b]
    assert len(set(ids_a)) == len(ids_a)
    assert all(i.startswith("openai:") and len(i) == len("openai:") + 32 for i in ids_a)
