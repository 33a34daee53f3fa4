"""Direct Python computations the report numbers must equal."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from compstream.domain.balance import BALANCE_FIELDS, Balance
from compstream.domain.replay import replay, replay_detailed
from compstream.reports.period import parse_period

US = timedelta(microseconds=1)
FLOW_FIELDS = ("issued_nanos", "consumed_nanos", "overdraft_nanos", "expired_nanos", "revoked_nanos",
               "forfeited_nanos", "usage_cost_nanos", "refund_unapplied_nanos", "input_tokens",
               "output_tokens", "cache_read_tokens", "cache_write_tokens", "unpriced_events")


def balances_at_end(events, period_text: str) -> dict[str, Balance]:
    """The ledger core's balances at the period end (last instant inside it)."""
    return replay(events, as_of=parse_period(period_text).end - US)


def balances_before(events, period_text: str) -> dict[str, Balance]:
    return replay(events, as_of=parse_period(period_text).start - US)


def period_delta(events, period_text: str) -> dict[str, dict[str, int]]:
    end, start = balances_at_end(events, period_text), balances_before(events, period_text)
    out = {}
    for eng, bal in end.items():
        before = start.get(eng, Balance())
        out[eng] = {f: getattr(bal, f) - getattr(before, f) for f in BALANCE_FIELDS}
    return out


def postings_in(events, period_text: str) -> dict[str, list]:
    period = parse_period(period_text)
    result = replay_detailed(events)
    return {eng: [p for p in ps if period.start <= p.event_time < period.end] for eng, ps in result.postings.items()}


def usage_in(events, period_text: str, engineer: str | None = None) -> list:
    period = parse_period(period_text)
    return [e for e in events if e.type == "usage" and period.start <= e.event_time < period.end
            and (engineer is None or e.engineer_id == engineer)]


def tokens(e) -> int:
    # Independent of compstream.domain.tokens on purpose: input already holds the cache tokens.
    return e.input_tokens + e.output_tokens


def usage_by_model(usage: list) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in usage:
        row = out[f"{e.provider}/{e.model}"]
        row["usage_events"] += 1
        row["unpriced_events"] += e.cost_nanos is None
        row["priced_cost_nanos"] += e.cost_nanos or 0
        row["tokens"] += tokens(e)
        row["input_tokens"] += e.input_tokens
        row["output_tokens"] += e.output_tokens
        row["cache_read_tokens"] += e.cache_read_tokens
        row["cache_write_tokens"] += e.cache_write_tokens
    return {k: dict(v) for k, v in out.items()}
