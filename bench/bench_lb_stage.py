"""Leaderboard partition stage micro benchmark (no Kafka), one JSON line:

    python -m bench.bench_lb_stage [--events 200000] [--engineers 10000] [--batch 5000]

state : PartitionState.apply_usage per event + drain() per batch, 4 partitions
        (the domain object alone; watermark never advances).
stage : PartitionStage.process per batch of encoded source messages, as the
        worker drives it (decode, apply, watermark/finals, drain, records).

Data: synth usage over 28 days with team assignments, 1% of engineers opted
out, 0.5% corrections. `digest` hashes every emitted message (and, for the
stage, every record) so runs on two code versions can be compared for
byte-identical output.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import random
import time
from collections import Counter
from datetime import datetime, timezone

from compstream.codec import encode_event
from compstream.domain.events import LeaderboardPrivacy, TeamAssigned, Usage
from compstream.domain.leaderboard import LeaderboardConfig, PartitionState
from compstream.synth import START, generate
from compstream.worker.leaderboards.partition import PartitionStage
from compstream.worker.processor import SourceMessage, partition_of

P = 4
NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def events(n: int, engineers: int) -> tuple[list, list]:
    """(hr events, usage events incl. corrections), deterministic."""
    rng = random.Random(11)
    hr, usage = [], []
    for e in generate(engineers, n, seed=5, with_hr=True):
        if isinstance(e, TeamAssigned):
            hr.append(e)
            if rng.random() < 0.01:
                hr.append(LeaderboardPrivacy(f"priv-{e.engineer_id}", e.engineer_id, True, START))
        elif isinstance(e, Usage):
            usage.append(e)
            if rng.random() < 0.005:
                usage.append(dataclasses.replace(
                    e, event_id=f"fix-{e.event_id}", corrects_event_id=e.event_id,
                    input_tokens=-(e.input_tokens // 2), output_tokens=0, cache_read_tokens=0,
                    cost_nanos=None if e.cost_nanos is None else -(e.cost_nanos // 2)))
    return hr, usage


def _digest(h, obj) -> None:
    h.update(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def bench_state(hr: list, usage: list, batch: int, cfg: LeaderboardConfig) -> dict:
    states = [PartitionState(p, cfg) for p in range(P)]
    for e in hr:
        states[partition_of(e.engineer_id, P)].apply_hr(e)
    plain = [u for u in usage if u.corrects_event_id is None]  # the state has no correction path
    routed = [(states[partition_of(u.engineer_id, P)], u) for u in plain]  # hashing not timed
    h = hashlib.sha256()
    t_apply = t_drain = 0.0
    drains = 0
    gc.collect()
    for i in range(0, len(plain), batch):
        t0 = time.perf_counter()
        for st, u in routed[i:i + batch]:
            st.apply_usage(u)
        t1 = time.perf_counter()
        msgs = [m for st in states for m in st.drain()]
        t2 = time.perf_counter()
        t_apply += t1 - t0
        t_drain += t2 - t1
        drains += len(msgs)
        for m in msgs:
            _digest(h, m.to_dict())
    for st in states:
        _digest(h, st.to_dict())
    return {
        "events": len(plain), "drained_messages": drains,
        "apply_us_per_event": round(t_apply / len(plain) * 1e6, 2),
        "drain_ms_per_message": round(t_drain / max(1, drains) * 1e3, 3),
        "total_us_per_event": round((t_apply + t_drain) / len(plain) * 1e6, 2),
        "digest": h.hexdigest()[:16],
    }


def bench_stage(hr: list, usage: list, batch: int, cfg: LeaderboardConfig) -> dict:
    offsets: Counter = Counter()
    msgs = []
    for e in hr + usage:
        topic = "u" if isinstance(e, Usage) else "g"
        p = partition_of(e.engineer_id, P)
        msgs.append(SourceMessage(topic, p, offsets[(topic, p)], e.engineer_id.encode(), encode_event(e), NOW))
        offsets[(topic, p)] += 1
    stage = PartitionStage(cfg, {"u": "usage", "g": "grants"})
    clock = 10**15
    for p in range(P):
        stage.restore(p, [], clock)
    h = hashlib.sha256()
    sent = 0
    elapsed = 0.0
    n_usage = len(hr)  # HR first, not timed: a one-off load
    stage.process(msgs[:n_usage], clock)
    gc.collect()
    for i in range(n_usage, len(msgs), batch):
        clock += 1_000
        t0 = time.perf_counter()
        out = stage.process(msgs[i:i + batch], clock)
        elapsed += time.perf_counter() - t0
        sent += len(out.messages)
        for m in out.messages:
            _digest(h, m.to_dict())
        for p in sorted(out.records):
            for k in sorted(out.records[p]):
                h.update(k.encode() + out.records[p][k])
    n = len(msgs) - n_usage
    return {
        "events": n, "batches": -(-n // batch), "messages_sent": sent,
        "us_per_event": round(elapsed / n * 1e6, 2),
        "ms_per_batch": round(elapsed / -(-n // batch) * 1e3, 2),
        "digest": h.hexdigest()[:16],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--engineers", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=5_000)
    args = ap.parse_args()
    cfg = LeaderboardConfig()
    hr, usage = events(args.events, args.engineers)
    out = {"state": bench_state(hr, usage, args.batch, cfg),
           "stage": bench_stage(hr, usage, args.batch, cfg)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
