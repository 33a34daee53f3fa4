"""Alternated A/B of worker builds on one broker: the machine's speed drifts
~20-30 % within an hour, so variants are compared as ratios within a round,
and each round reverses the order of the one before. A new broker is
sometimes slow at first: in an A/A run (one tree as both variants, 500k
events, 4 rounds) the first two runs made 14,554 and 15,129 ev/s and the six
after 17,832-19,519 (in the next run it was not), so `--warmup` runs
(default 1, the first variant, not counted) come first.

    python -m bench.ab throughput --events 1000000 --rounds 2 base=/tmp/wt-base/src head=src
    python -m bench.ab latency --rate 10000 --secs 30 --rounds 2 base=/tmp/wt-base/src head=src

A variant is `name=SRC`: the worker runs with PYTHONPATH=SRC (a worktree's
`src`, e.g. from `git worktree add /tmp/wt-base <commit> --detach`), and
`name=SRC+KEY=VALUE+...` adds those variables to the worker's environment
(one tree under two settings, e.g. `+COMPSTREAM_HISTORY_SINK=external`), under
the transactional engine with leaderboards off, as the bench's
transactional rows (`--engine faust`: the Faust engine, leaderboards off
too). One JSON line per run, then each round's ratios to the first variant,
and at the end each variant's geometric mean of those ratios (an even
number of rounds cancels the position effect). Throughput runs check every
engineer's last balance.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import timedelta
from pathlib import Path

from bench import common, e2e
from compstream.broker.topics import ensure_topics

PARTITIONS = 4
ENGINEERS = 10_000


def _variants(specs: list[str]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        src, *settings = rest.split("+")
        if not sep or not name or not Path(src, "compstream").is_dir():
            raise SystemExit(f"variant {spec!r}: expected NAME=SRC with SRC/compstream a directory")
        env = {"PYTHONPATH": str(Path(src).resolve())}
        for setting in settings:
            key, eq, value = setting.partition("=")
            if not eq or not key:
                raise SystemExit(f"variant {spec!r}: expected +KEY=VALUE, got {setting!r}")
            env[key] = value
        out.append((name, env))
    if len({name for name, _ in out}) != len(out):
        raise SystemExit("variant names must differ")
    return out


def summary(rounds: list[dict[str, float | None]], base: str) -> dict[str, float | None]:
    """Each variant's geometric mean over the rounds of its ratio to `base`:
    with the order reversed every round, a position effect (the second run
    of a pair faster) multiplies one round's ratio and divides the next's,
    so an even number of rounds cancels it. None if a round lacks a figure."""
    out: dict[str, float | None] = {}
    for name in rounds[0] if rounds else {}:
        ratios = [r[name] / r[base] for r in rounds if r.get(name) and r.get(base)]
        out[name] = round(statistics.geometric_mean(ratios), 3) if len(ratios) == len(rounds) else None
    return out


ENGINES = {"transactional": e2e.TRANSACTIONAL, "faust": {**e2e.FAUST, "COMPSTREAM_LEADERBOARDS": "off"}}


def _run(args: argparse.Namespace, bootstrap: str, i: int, env: dict[str, str]) -> dict:
    env = {**ENGINES[args.engine], **env}
    topics = common.bench_topics(f"ab{i}")
    ensure_topics(bootstrap, topics, PARTITIONS)
    if args.kind == "throughput":
        from bench.run import events_for

        events = events_for(args.events, ENGINEERS)
        common.produce(bootstrap, topics, events)
        res = e2e.throughput(bootstrap, topics, events, PARTITIONS, env=env)
        return {k: res.get(k) for k in ("sustained_events_per_s", "wall_from_spawn_s", "history_loaded_from_spawn_s",
                                        "worker_peak_rss_mib", "engineers_wrong_count")}
    from compstream.synth import generate

    events = [e for e in generate(ENGINEERS, int(args.rate * args.secs), seed=11,
                                  usage_span=timedelta(seconds=args.secs))
              if e.type in ("grant_issued", "usage")]
    res = e2e.latency(bootstrap, topics, events, PARTITIONS, args.rate, env=env)
    return {k: res.get(k) for k in ("achieved_offered_events_per_s", "visible_p50_ms", "visible_p99_ms",
                                    "visible_max_ms", "stalled")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("throughput", "latency"))
    ap.add_argument("variants", nargs="+", help="NAME=SRC, at least two")
    ap.add_argument("--engine", choices=sorted(ENGINES), default="transactional")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="runs of the first variant first, not counted")
    ap.add_argument("--events", type=int, default=1_000_000, help="throughput: the backlog's events")
    ap.add_argument("--rate", type=float, default=10_000.0, help="latency: events a second offered")
    ap.add_argument("--secs", type=int, default=30, help="latency: seconds offered")
    args = ap.parse_args()
    variants = _variants(args.variants)
    if len(variants) < 2 or args.rounds < 1:
        raise SystemExit("give at least two variants and one round")
    metric = "sustained_events_per_s" if args.kind == "throughput" else "visible_p99_ms"
    figures: list[dict[str, float | None]] = []
    with e2e.local_broker("bench-ab.", PARTITIONS) as info:
        i = 0
        for _ in range(args.warmup):  # a cold broker is slower (see above)
            res = _run(args, info.bootstrap, i, variants[0][1])
            i += 1
            print(json.dumps({"warmup": variants[0][0], **res}), flush=True)
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            got = {}
            for name, env in order:
                res = _run(args, info.bootstrap, i, env)
                i += 1
                got[name] = res.get(metric)
                print(json.dumps({"round": r, "variant": name, **res}), flush=True)
            figures.append(got)
            first = got[variants[0][0]]
            if first:
                print(json.dumps({"round": r, "order": [n for n, _ in order], "metric": metric,
                                  "ratio_to_" + variants[0][0]: {n: round(v / first, 3) if v else None
                                                                 for n, v in got.items()}}), flush=True)
    print(json.dumps({"metric": metric, "rounds": args.rounds,
                      "geomean_ratio_to_" + variants[0][0]: summary(figures, variants[0][0])}), flush=True)

if __name__ == "__main__":
    main()
