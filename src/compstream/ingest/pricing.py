"""Pricing: provider-reported cost first, else `genai-prices` at the row's own time.

Rounding rule (the only one in ingestion): a USD amount is an exact `Decimal`
(JSON floats are parsed as Decimal, genai-prices computes in Decimal); it is
converted to integer nano-dollars by multiplying by 10**9 and rounding half to
even (banker's rounding) to the nearest nano. Nothing is rounded before that.

`price_version` records what priced an event:
- `genai-prices/<package version>+data.<12 hex of sha256 of the bundled price data>`
  for token-priced events (the bundled data module is hashed, so two installs of
  the same version with patched data are told apart);
- `provider:<source>` when the provider reported the cost itself.

Aggregated rows and long-context tiers: genai-prices picks a tiered price
(e.g. Claude Sonnet 4.5 or Gemini 2.5 Pro above 200k input tokens) from the
usage's total input — right for one request, wrong for a usage bucket that
sums many requests. Rows are therefore priced as `N * price(usage / N)` with
N a power of ten that brings the input under TIER_SAFE_INPUT (exact in
Decimal: prices are linear within a tier), i.e. at the base tier. Only a row
the provider marks as long-context (Anthropic `context_window` "200k-1M",
passed as price context `context_window`) is priced on its own totals, which
then exceed the tier start as every request in it did. Known limitation:
long-context OpenAI/Gemini requests in aggregated exports are priced at base
rates (GCP rows carry the billed cost, so Gemini via billing export is exact).

Unknown models are never dropped: the event gets cost_nanos=None and an
`unpriced_reason`, and `reprice` can price it later (see pipeline.reprice).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

from compstream.domain.events import AMOUNT_NANOS_MAX
from compstream.ingest.model import RowError, TokenCounts

NANOS_PER_USD = Decimal(10**9)
# Inputs at or below this many tokens never reach a tier threshold.
TIER_SAFE_INPUT = 1000
LONG_CONTEXT_WINDOWS = frozenset({"200k-1M"})

# Source provider -> genai-prices provider id.
GENAI_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
}


def usd_to_nanos(usd: Decimal) -> int:
    """Exact USD -> integer nanos, round half-even to the nearest nano."""
    if not isinstance(usd, Decimal):
        raise TypeError(f"expected Decimal, got {type(usd).__name__}")
    if not usd.is_finite():
        raise RowError(f"cost is not finite: {usd}")
    nanos = int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))
    if abs(nanos) > AMOUNT_NANOS_MAX:
        raise RowError(f"cost {usd} USD is beyond the {AMOUNT_NANOS_MAX}-nano bound (a unit error?)")
    return nanos


def format_nanos(nanos: int) -> str:
    """Nanos -> `$1,234.567890123` (all nine decimals kept; no rounding on display)."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 10**9)
    return f"{sign}${whole:,}.{frac:09d}"


@lru_cache(maxsize=1)
def genai_prices_version() -> str:
    import genai_prices

    spec = importlib.util.find_spec("genai_prices.data")
    data_hash = "unknown"
    if spec is not None and spec.origin:
        with open(spec.origin, "rb") as handle:
            data_hash = hashlib.sha256(handle.read()).hexdigest()[:12]
    return f"genai-prices/{genai_prices.__version__}+data.{data_hash}"


def provider_version(source: str) -> str:
    return f"provider:{source}"


@dataclass(frozen=True, slots=True)
class Price:
    cost_nanos: int | None
    price_version: str
    unpriced_reason: str | None = None


def _base_tier_scale(tokens: TokenCounts) -> int:
    scale = 1
    while tokens.input > TIER_SAFE_INPUT * scale:
        scale *= 10
    return scale


def genai_usage_kwargs(tokens: TokenCounts, scale: int = 1) -> dict[str, int | Decimal]:
    """TokenCounts -> genai_prices.Usage keywords (zeros left out)."""
    kwargs = {
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "cache_read_tokens": tokens.cache_read,
        "cache_write_tokens": tokens.cache_write,
        "cache_write_1h_tokens": tokens.cache_write_1h,
        "input_audio_tokens": tokens.input_audio,
        "output_audio_tokens": tokens.output_audio,
        "web_searches": tokens.web_searches,
    }
    if scale == 1:
        return {key: value for key, value in kwargs.items() if value}
    return {key: Decimal(value) / scale for key, value in kwargs.items() if value}


def price_tokens(
    provider: str,
    model: str,
    occurred_at: datetime,
    tokens: TokenCounts,
    price_context: dict[str, str] | None = None,
) -> Price:
    """Price token usage with genai-prices at `occurred_at`. Never raises for an unknown model."""
    from genai_prices import Usage, calc_price

    version = genai_prices_version()
    provider_id = GENAI_PROVIDER.get(provider)
    if provider_id is None:
        return Price(None, version, f"no price data for provider {provider!r}")
    context = dict(price_context or {})
    long_context = context.pop("context_window", None) in LONG_CONTEXT_WINDOWS
    scale = 1 if long_context else _base_tier_scale(tokens)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = calc_price(
                Usage(**genai_usage_kwargs(tokens, scale)),
                model,
                provider_id=provider_id,
                genai_request_timestamp=occurred_at,
                price_context=context or None,
            )
    except LookupError as exc:
        return Price(None, version, f"unknown model {model!r} for {provider_id}: {exc}")
    except (ValueError, UserWarning) as exc:
        return Price(None, version, f"genai-prices cannot price this usage: {exc}")
    total = result.total_price
    if not isinstance(total, Decimal):
        total = Decimal(str(total))
    total *= scale
    if total < 0:
        return Price(None, version, f"genai-prices returned a negative price {total}")
    return Price(usd_to_nanos(total), version)


def check_currency(currency: object, where: str = "currency") -> None:
    """Only USD is accepted: no FX guessing."""
    if not isinstance(currency, str) or currency.strip().upper() != "USD":
        raise RowError(f"unsupported currency {currency!r} in {where}: only USD is accepted (no FX conversion)")
