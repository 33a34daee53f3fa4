"""Regenerate examples/sample-events.jsonl: a small, realistic month of events.

Six engineers on two teams, monthly allowances that expire, a bonus, a top-up,
a revocation, an offboarding, and usage across OpenAI, Anthropic and Google
models (prices here are the demo's own fixed list prices per event, already in
nano-dollars, so the sample needs no price lookup). Deterministic (seeded).
"""

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from compstream.domain.events import format_time

MODELS = [
    ("openai", "gpt-4o", 2_500, 10_000),  # $2.50 / $10 per million tokens
    ("openai", "gpt-4o-mini", 150, 600),
    ("anthropic", "claude-sonnet-4-20250514", 3_000, 15_000),
    ("anthropic", "claude-3-5-haiku-latest", 800, 4_000),
    ("google", "gemini-2.5-pro", 1_250, 10_000),
    ("google", "gemini-2.0-flash", 100, 400),
]  # (provider, model, nanos per input token, nanos per output token)
ENGINEERS = {"ada": "platform", "grace": "platform", "linus": "infra",
             "margaret": "infra", "ken": "platform", "barbara": "infra"}


def main() -> None:
    rng = random.Random(20261001)
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    events = []
    for engineer, team in ENGINEERS.items():
        events.append({"type": "team_assigned", "event_id": f"team-{engineer}", "engineer_id": engineer,
                       "team_id": team, "effective_at": format_time(start)})
        events.append({"type": "grant_issued", "event_id": f"grant-{engineer}-2026-10",
                       "engineer_id": engineer, "grant_id": f"{engineer}-allowance-2026-10",
                       "amount_nanos": 150_000_000_000, "effective_at": format_time(start),
                       "expires_at": format_time(start + timedelta(days=21)), "kind": "allowance"})
    events.append({"type": "grant_issued", "event_id": "grant-ada-bonus", "engineer_id": "ada",
                   "grant_id": "ada-bonus-q4", "amount_nanos": 250_000_000_000,
                   "effective_at": format_time(start + timedelta(days=3)), "expires_at": None, "kind": "bonus"})
    events.append({"type": "grant_issued", "event_id": "grant-linus-topup", "engineer_id": "linus",
                   "grant_id": "linus-topup-1", "amount_nanos": 40_000_000_000,
                   "effective_at": format_time(start + timedelta(days=10)),
                   "expires_at": format_time(start + timedelta(days=40)), "kind": "topup"})
    events.append({"type": "grant_revoked", "event_id": "revoke-linus-topup", "engineer_id": "linus",
                   "grant_id": "linus-topup-1", "effective_at": format_time(start + timedelta(days=18))})
    events.append({"type": "engineer_offboarded", "event_id": "offboard-barbara",
                   "engineer_id": "barbara", "effective_at": format_time(start + timedelta(days=15))})
    for i in range(260):
        engineer = rng.choice(list(ENGINEERS))
        provider, model, in_price, out_price = rng.choice(MODELS)
        occurred = start + timedelta(seconds=rng.randrange(0, 25 * 86400))
        tokens_in = rng.randrange(20_000, 2_000_000)
        tokens_out = rng.randrange(1_000, 200_000)
        cache_read = rng.randrange(0, tokens_in // 2)
        events.append({
            "type": "usage", "event_id": f"usage-{i:04d}", "engineer_id": engineer,
            "provider": provider, "model": model, "occurred_at": format_time(occurred),
            "input_tokens": tokens_in, "output_tokens": tokens_out,
            "cache_read_tokens": cache_read, "cache_write_tokens": 0,
            "cost_nanos": tokens_in * in_price + tokens_out * out_price,
        })
    out = Path(__file__).with_name("sample-events.jsonl")
    out.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    print(f"wrote {len(events)} events to {out}")


if __name__ == "__main__":
    main()
