"""Replay benchmark: a 1M-event JSONL log (~10,000 engineers, grants + usage,
shuffled), timed in stages. Prints one JSON line.

    .venv/bin/python bench/bench_replay.py [--events 1000000] [--engineers 10000]
        [--postings] [--keep FILE]

Stages: generate -> parse (read_jsonl: JSON + validation) -> replay (balances,
from parsed events) -> end-to-end (file -> balances, as the CLI does).
With --postings also times replay_detailed with hash-chained postings.
No assertions: this measures, it does not judge.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import tempfile
import time

from compstream.domain.replay import replay, replay_detailed
from compstream.replay.file import read_jsonl

DAY = 86400


def _ts(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{sec % 997:06d}Z"


def generate(path: str, n_events: int, n_engineers: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    start = 1767225600  # 2026-01-01
    lines: list[str] = []
    per_eng = max(1, n_events // n_engineers)
    for e in range(n_engineers):
        eng = f"eng-{e:05d}"
        n_grants = 3
        for g in range(n_grants):
            eff = start + g * 30 * DAY
            exp = "null" if g == 2 else f'"{_ts(eff + 45 * DAY)}"'
            lines.append(
                f'{{"type":"grant_issued","event_id":"g-{e}-{g}","engineer_id":"{eng}",'
                f'"grant_id":"G{e}-{g}","amount_nanos":{rng.randint(50, 200) * 10**9},'
                f'"effective_at":"{_ts(eff)}","expires_at":{exp},"kind":"monthly"}}')
        if e % 50 == 0:
            lines.append(
                f'{{"type":"grant_revoked","event_id":"r-{e}","engineer_id":"{eng}",'
                f'"grant_id":"G{e}-1","effective_at":"{_ts(start + 40 * DAY)}"}}')
        for u in range(per_eng - n_grants - (1 if e % 50 == 0 else 0)):
            occ = start + rng.randrange(100 * DAY)
            cost = "null" if u % 97 == 0 else str(rng.randint(1, 3 * 10**9))
            lines.append(
                f'{{"type":"usage","event_id":"u-{e}-{u}","engineer_id":"{eng}",'
                f'"provider":"anthropic","model":"claude-sonnet-4-5","occurred_at":"{_ts(occ)}",'
                f'"input_tokens":{rng.randint(100, 20000)},"output_tokens":{rng.randint(10, 4000)},'
                f'"cache_read_tokens":0,"cache_write_tokens":0,"cost_nanos":{cost}}}')
    rng.shuffle(lines)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
        fh.write("\n")
    return len(lines)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--engineers", type=int, default=10_000)
    ap.add_argument("--postings", action="store_true")
    ap.add_argument("--keep", default=None, help="write the log here and keep it")
    args = ap.parse_args()

    path = args.keep or os.path.join(tempfile.mkdtemp(prefix="bench_replay."), "events.jsonl")
    out: dict = {"bench": "replay", "python": sys.version.split()[0], "cpus": os.cpu_count()}
    t0 = time.perf_counter()
    n = generate(path, args.events, args.engineers)
    out["events"] = n
    out["engineers"] = args.engineers
    out["file_mib"] = round(os.path.getsize(path) / 2**20, 1)
    out["generate_s"] = round(time.perf_counter() - t0, 2)

    bad: list = []
    gc.collect()
    t0 = time.perf_counter()
    events = list(read_jsonl([path], bad.append))
    dt = time.perf_counter() - t0
    out["parse_s"] = round(dt, 2)
    out["parse_events_per_s"] = round(n / dt)
    out["bad_lines"] = len(bad)
    out["rss_after_parse_mib"] = round(rss_mib(), 1)

    gc.collect()
    t0 = time.perf_counter()
    balances = replay(events)
    dt = time.perf_counter() - t0
    out["replay_s"] = round(dt, 3)
    out["replay_events_per_s"] = round(n / dt)
    out["balances"] = len(balances)
    out["overdraft_engineers"] = sum(1 for b in balances.values() if b.overdraft_nanos)
    if not all(b.conserved() for b in balances.values()):
        out["conservation"] = "BROKEN"

    if args.postings:
        gc.collect()
        t0 = time.perf_counter()
        res = replay_detailed(events)
        dt = time.perf_counter() - t0
        out["replay_postings_s"] = round(dt, 2)
        out["replay_postings_events_per_s"] = round(n / dt)
        out["postings"] = sum(len(p) for p in res.postings.values())
        del res
    del events, balances
    gc.collect()

    t0 = time.perf_counter()
    replay(read_jsonl([path], bad.append))
    dt = time.perf_counter() - t0
    out["end_to_end_s"] = round(dt, 2)
    out["end_to_end_events_per_s"] = round(n / dt)
    out["peak_rss_mib"] = round(rss_mib(), 1)
    if not args.keep:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
