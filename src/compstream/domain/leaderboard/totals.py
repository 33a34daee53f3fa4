"""Usage totals and the two ranking metrics. All amounts are integers.

Tokens: `compstream.domain.tokens` (input, cache reads and writes included,
plus output; cache tokens counted once). `cache_read_tokens` and
`cache_write_tokens` are subsets of `input_tokens`, shown for detail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from compstream.domain.events import Usage
from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.tokens import tokens as usage_tokens


class Metric(str, Enum):
    TOKENS = "tokens"  # domain/tokens.py: input (cache reads/writes included) + output
    SPEND = "spend"  # priced cost in nano-dollars; unpriced usage counts 0


METRICS: tuple[Metric, ...] = (Metric.TOKENS, Metric.SPEND)


@dataclass(frozen=True, slots=True)
class Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_nanos: int = 0
    # Usage without a price adds nothing to spend; counting it lets a board
    # say "spend is incomplete" instead of silently ranking it low.
    unpriced_events: int = 0
    events: int = 0

    @classmethod
    def from_usage(cls, usage: Usage) -> "Totals":
        cost = usage.cost_nanos
        # Positional: keyword construction showed up in the stage's profile.
        return cls(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                   usage.cache_write_tokens, cost or 0, 1 if cost is None else 0, 1)

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cost_nanos + other.cost_nanos,
            self.unpriced_events + other.unpriced_events,
            self.events + other.events,
        )

    @property
    def tokens(self) -> int:
        return usage_tokens(self.input_tokens, self.output_tokens)

    @property
    def cache_tokens(self) -> int:
        """The part of `input_tokens` that was cache reads or writes (not added to tokens)."""
        return self.cache_read_tokens + self.cache_write_tokens

    def value(self, metric: Metric) -> int:
        if metric is Metric.TOKENS:
            return self.tokens
        if metric is Metric.SPEND:
            return self.cost_nanos
        raise LeaderboardError(f"unknown metric {metric!r}")

    def is_activity(self) -> bool:
        """Anything a member contributed: tokens of any kind or spend."""
        return bool(self.tokens or self.cache_tokens or self.cost_nanos)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_nanos": self.cost_nanos,
            "unpriced_events": self.unpriced_events,
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, raw: object) -> "Totals":
        raw = c.obj(raw, "totals")
        return cls(
            input_tokens=c.req_int(raw, "input_tokens"),
            output_tokens=c.req_int(raw, "output_tokens"),
            cache_read_tokens=c.req_int(raw, "cache_read_tokens"),
            cache_write_tokens=c.req_int(raw, "cache_write_tokens"),
            cost_nanos=c.req_int(raw, "cost_nanos"),
            unpriced_events=c.req_int(raw, "unpriced_events"),
            events=c.req_int(raw, "events"),
        )


ZERO = Totals()


def sum_totals(items: Iterable[Totals]) -> Totals:
    out = ZERO
    for t in items:
        out = out + t
    return out


def _tokens(t: Totals) -> int:
    return usage_tokens(t.input_tokens, t.output_tokens)


def _spend(t: Totals) -> int:
    return t.cost_nanos


_VALUE = {Metric.TOKENS: _tokens, Metric.SPEND: _spend}


def metric_value(metric: Metric) -> Callable[[Totals], int]:
    """Totals -> value for `metric`, as Totals.value but resolved once per ranking."""
    try:
        return _VALUE[metric]
    except (KeyError, TypeError):
        raise LeaderboardError(f"unknown metric {metric!r}") from None
