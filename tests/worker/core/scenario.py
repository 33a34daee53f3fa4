"""Event scenarios with the timing users really have: grants published up to
three days ahead of their effective time, usage published as it happens
(out of order within the lateness), revocations, offboardings, and
republished duplicates. `publish_order` is the order a real system appends
them to the two source topics."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from compstream.domain.events import EngineerOffboarded, GrantIssued, GrantRevoked, TeamAssigned, Usage

START = datetime(2026, 10, 1, tzinfo=timezone.utc)
LATENESS_S = 6 * 3600


class Clock:
    """A monotonic clock for the batch loop that moves 50 ms per reading:
    batches close by count or by this clock, never by the machine's speed."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.05
        return self.t


def scenario(seed: int, engineers: int, usage_per_engineer: int, duplicates: int = 3,
             usage_gap_minutes_max: int = 24 * 60):
    """[(publish_time, event)] in publish order."""
    rng = random.Random(seed)
    out = []
    for n in range(engineers):
        eng = f"eng-{seed % 1000}-{n}"
        joined = START + timedelta(hours=rng.randint(0, 48))
        team = TeamAssigned(f"team-{eng}", eng, f"t{n % 3}", joined)
        out.append((joined - timedelta(hours=rng.randint(0, 72)), team))
        grant_ids = []
        for g in range(rng.randint(1, 3)):
            effective = START + timedelta(hours=rng.randint(0, 24 * 12))
            expires = effective + timedelta(days=rng.randint(1, 15)) if rng.random() < 0.7 else None
            gid = f"{eng}-g{g}"
            grant_ids.append((gid, effective))
            event = GrantIssued(f"gi-{gid}", eng, gid, rng.randint(1, 400) * 10**8, effective, expires,
                                rng.choice(["allowance", "bonus"]))
            out.append((effective - timedelta(hours=rng.randint(0, 72)), event))
        t = START
        for u in range(usage_per_engineer):
            t += timedelta(minutes=rng.randint(1, usage_gap_minutes_max))
            event = Usage(f"u-{eng}-{u}", eng, "openai", "gpt-4o", t, 1000, 100, 0, 0,
                          rng.randint(0, 5 * 10**9))
            # Published within the lateness of its time, so never late.
            out.append((t + timedelta(seconds=rng.randint(0, LATENESS_S // 2)), event))
        if grant_ids and rng.random() < 0.4:
            gid, effective = rng.choice(grant_ids)
            when = effective + timedelta(hours=rng.randint(1, 24 * 5))
            out.append((when - timedelta(hours=rng.randint(0, 48)), GrantRevoked(f"rv-{gid}", eng, gid, when)))
        if rng.random() < 0.2:
            when = START + timedelta(days=rng.randint(5, 20))
            out.append((when - timedelta(hours=rng.randint(0, 48)), EngineerOffboarded(f"off-{eng}", eng, when)))
    # Republished later (a re-ingest, a producer retry): one of every kind, then more.
    by_kind: dict[str, list] = {}
    for pair in out:
        by_kind.setdefault(pair[1].type, []).append(pair)
    again = [rng.choice(pairs) for _, pairs in sorted(by_kind.items())]
    again += [rng.choice(out) for _ in range(duplicates)]
    for when, event in again:
        out.append((when + timedelta(hours=rng.randint(0, 5)), event))
    out.sort(key=lambda pair: pair[0])
    return out
