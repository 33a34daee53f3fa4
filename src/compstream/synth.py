"""Deterministic synthetic event logs for tests, soaks and benchmarks.

Realistic shape: every engineer gets a monthly allowance that expires, some a
bonus that never expires; usage across three providers arrives over the
period; a few revocations and offboardings. Seeded, so a failure reproduces.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Iterator

from compstream.domain.events import EngineerOffboarded, Event, GrantIssued, GrantRevoked, TeamAssigned, Usage

START = datetime(2026, 10, 1, tzinfo=timezone.utc)
MODELS = (
    ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-20250514"), ("anthropic", "claude-3-5-haiku-latest"),
    ("google", "gemini-2.5-pro"), ("google", "gemini-2.0-flash"),
)


def engineer_ids(count: int) -> list[str]:
    return [f"eng-{i:05d}" for i in range(count)]


def generate(engineers: int, usage_events: int, seed: int = 7, span_days: int = 28,
             teams: int = 8, with_hr: bool = False, usage_span: timedelta | None = None) -> Iterator[Event]:
    """Grants first (per engineer), then usage in time order, then the odd
    revocation/offboarding — callers shuffle if they want disorder.
    `usage_span`: the usage's event times cover this from START instead of
    `span_days` (e.g. as long as a paced run lasts, as in a live system)."""
    rng = random.Random(seed)
    ids = engineer_ids(engineers)
    span = usage_span if usage_span is not None else timedelta(days=span_days)
    for n, engineer in enumerate(ids):
        if with_hr:
            yield TeamAssigned(f"team-{engineer}", engineer, f"team-{n % teams}", START)
        yield GrantIssued(f"grant-{engineer}-m", engineer, f"{engineer}-allowance", rng.randrange(50, 500) * 10**9,
                          START, START + timedelta(days=rng.randrange(10, 40)), "allowance")
        if n % 3 == 0:
            yield GrantIssued(f"grant-{engineer}-b", engineer, f"{engineer}-bonus", rng.randrange(10, 100) * 10**9,
                              START + timedelta(days=rng.randrange(0, 14)), None, "bonus")
    step_us = max(1, int(span.total_seconds() * 1_000_000) // max(1, usage_events))
    for i in range(usage_events):
        engineer = ids[rng.randrange(engineers)]
        provider, model = MODELS[rng.randrange(len(MODELS))]
        tokens_in = rng.randrange(1_000, 400_000)
        tokens_out = rng.randrange(100, 40_000)
        yield Usage(
            f"u-{seed}-{i}", engineer, provider, model,
            START + timedelta(microseconds=i * step_us + rng.randrange(step_us)),
            tokens_in, tokens_out, rng.randrange(0, tokens_in // 4 + 1), 0,
            None if rng.random() < 0.01 else tokens_in * 3_000 + tokens_out * 15_000,
        )
    for n, engineer in enumerate(ids):
        if n % 17 == 5:
            yield GrantRevoked(f"revoke-{engineer}", engineer, f"{engineer}-bonus",
                               START + timedelta(days=rng.randrange(1, span_days)))
        if n % 29 == 11:
            yield EngineerOffboarded(f"offboard-{engineer}", engineer,
                                     START + timedelta(days=rng.randrange(1, span_days)))
