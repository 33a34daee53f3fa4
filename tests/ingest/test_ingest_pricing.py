"""Pricing checked against genai-prices called directly, and the rounding rule."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import genai_prices
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from compstream.ingest.model import RowError, TokenCounts
from compstream.ingest.pricing import format_nanos, genai_prices_version, price_tokens, usd_to_nanos


def _nanos(usd: Decimal) -> int:
    return int((usd * 10**9).to_integral_value(rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize(
    "provider, model, when, kwargs",
    [
        ("openai", "gpt-4o-2024-08-06", datetime(2026, 3, 1, tzinfo=timezone.utc),
         dict(input_tokens=900, output_tokens=300, cache_read_tokens=400)),
        ("openai", "gpt-4o-mini", datetime(2025, 1, 15, 12, tzinfo=timezone.utc),
         dict(input_tokens=777, output_tokens=123)),
        ("anthropic", "claude-opus-4-1", datetime(2025, 9, 1, tzinfo=timezone.utc),
         dict(input_tokens=1000, output_tokens=50, cache_read_tokens=300, cache_write_tokens=200)),
        ("anthropic", "claude-sonnet-4-5-20250929", datetime(2026, 3, 1, tzinfo=timezone.utc),
         dict(input_tokens=1000, output_tokens=10, cache_write_tokens=500, cache_write_1h_tokens=200)),
        ("google", "gemini-2.5-flash", datetime(2026, 6, 1, tzinfo=timezone.utc),
         dict(input_tokens=1000, output_tokens=999, cache_read_tokens=10)),
    ],
)
def test_small_usage_matches_genai_prices_exactly(provider, model, when, kwargs):
    expected = calc_price(GPUsage(**kwargs), model, provider_id=provider, genai_request_timestamp=when).total_price
    tokens = TokenCounts(
        input=kwargs["input_tokens"], output=kwargs["output_tokens"],
        cache_read=kwargs.get("cache_read_tokens", 0), cache_write=kwargs.get("cache_write_tokens", 0),
        cache_write_1h=kwargs.get("cache_write_1h_tokens", 0),
    )
    price = price_tokens(provider, model, when, tokens)
    assert price.cost_nanos == _nanos(expected)
    assert price.price_version == genai_prices_version()
    assert price.price_version.startswith(f"genai-prices/{genai_prices.__version__}+data.")


def test_large_aggregate_below_tier_matches_genai_prices():
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    kwargs = dict(input_tokens=1_200_000, output_tokens=300_000, cache_read_tokens=400_000)
    expected = calc_price(GPUsage(**kwargs), "gpt-4o", provider_id="openai", genai_request_timestamp=when).total_price
    tokens = TokenCounts(input=1_200_000, output=300_000, cache_read=400_000)
    assert price_tokens("openai", "gpt-4o", when, tokens).cost_nanos == _nanos(expected)


def test_aggregated_bucket_priced_at_base_tier_unless_long_context():
    """A bucket summing many short requests must not hit the >200k long-context tier."""
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    model = "claude-sonnet-4-5-20250929"
    mp = calc_price(GPUsage(input_tokens=1), model, provider_id="anthropic", genai_request_timestamp=when).model_price
    base = lambda p: p.base if hasattr(p, "base") else p  # noqa: E731
    tokens = TokenCounts(input=1_450_000, output=80_000, cache_read=1_000_000, cache_write=300_000,
                         cache_write_1h=100_000)
    expected_base = (
        Decimal(150_000) * base(mp.input_mtok) + Decimal(1_000_000) * base(mp.cache_read_mtok)
        + Decimal(200_000) * base(mp.cache_write_mtok) + Decimal(100_000) * base(mp.cache_write_1h_mtok)
        + Decimal(80_000) * base(mp.output_mtok)
    ) / 1_000_000
    assert price_tokens("anthropic", model, when, tokens).cost_nanos == _nanos(expected_base)
    # context_window 200k-1M: every request was long, genai-prices' tier applies on the totals
    long_expected = calc_price(
        GPUsage(input_tokens=1_450_000, output_tokens=80_000, cache_read_tokens=1_000_000,
                cache_write_tokens=300_000, cache_write_1h_tokens=100_000),
        model, provider_id="anthropic", genai_request_timestamp=when,
    ).total_price
    long_price = price_tokens("anthropic", model, when, tokens, {"context_window": "200k-1M"})
    assert long_price.cost_nanos == _nanos(long_expected) > _nanos(expected_base)


def test_price_at_own_timestamp_follows_price_changes():
    # Find a model whose genai-prices price changes over time; the price must follow the row's time.
    from genai_prices.data import providers

    for provider in providers:
        if provider.id not in ("openai", "anthropic", "google"):
            continue
        for model in provider.models:
            if isinstance(model.prices, list) and len(model.prices) > 1 and model.prices[-1].constraint is not None \
                    and hasattr(model.prices[-1].constraint, "start_date"):
                start = model.prices[-1].constraint.start_date
                before = datetime(start.year, start.month, start.day, tzinfo=timezone.utc).replace(year=start.year - 1)
                after = datetime(start.year, start.month, start.day, 12, tzinfo=timezone.utc)
                tokens = TokenCounts(input=1000, output=1000)
                for when in (before, after):
                    expected = calc_price(GPUsage(input_tokens=1000, output_tokens=1000), model.id,
                                          provider_id=provider.id, genai_request_timestamp=when).total_price
                    assert price_tokens(provider.id, model.id, when, tokens).cost_nanos == _nanos(expected)
                return
    pytest.skip("no time-varying price in this genai-prices data")


def test_unknown_model_and_provider_are_unpriced_with_reason():
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    p = price_tokens("openai", "gpt-99-hyperion-preview", when, TokenCounts(input=10, output=1))
    assert p.cost_nanos is None and "unknown model" in p.unpriced_reason
    q = price_tokens("mistral-self-hosted", "x", when, TokenCounts(input=10))
    assert q.cost_nanos is None and "no price data" in q.unpriced_reason


def test_rounding_half_even_to_the_nano():
    assert usd_to_nanos(Decimal("0.0000000005")) == 0
    assert usd_to_nanos(Decimal("0.0000000015")) == 2
    assert usd_to_nanos(Decimal("0.0000000025")) == 2
    assert usd_to_nanos(Decimal("12.3456789012")) == 12_345_678_901
    assert usd_to_nanos(Decimal("-0.0000000015")) == -2
    with pytest.raises(RowError):
        usd_to_nanos(Decimal("1e12"))
    assert format_nanos(1_234_567_890_123) == "$1,234.567890123"
    assert format_nanos(-5) == "-$0.000000005"
