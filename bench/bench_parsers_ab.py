"""The fast parsers of another checkout against these, in one process:

    git archive OLD src | tar -x -C /tmp/old
    python -m bench.bench_parsers_ab /tmp/old [REPS]

Loads the other tree's domain/event_fast.py and replay/jsonl_fast.py as
separate modules (against this tree's event classes) and times line_event and
build_event on bench-like input, old and new in alternating order per rep, so
the drift of a shared machine hits both alike. Prints one JSON line per case
(minimum and paired-median ratios new/old). Used for bench/profile_notes.md
(2026-12-06, event shapes). No assertions beyond equal results.
"""
import importlib.util
import json
import random
import statistics
import sys
import time
from datetime import datetime, timezone

import orjson

from compstream.domain import event_fast as new_ef
from compstream.replay import jsonl_fast as new_jf


def load(name, path, event_fast=None):
    """The module at `path` as `name`; `event_fast` stands in for
    compstream.domain.event_fast while it imports."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # msgspec resolves a struct's annotations there
    saved = sys.modules["compstream.domain.event_fast"]
    if event_fast is not None:
        sys.modules["compstream.domain.event_fast"] = event_fast
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules["compstream.domain.event_fast"] = saved
    return mod


def _usage_line(i: int, rng: random.Random) -> bytes:
    return (f'{{"type":"usage","event_id":"u-{i}","engineer_id":"eng-{i % 1000:05d}",'
            f'"provider":"anthropic","model":"claude-sonnet-4-5",'
            f'"occurred_at":"2026-01-0{1 + i % 9}T00:00:00.{i % 999999:06d}Z",'
            f'"input_tokens":{rng.randint(100, 20000)},"output_tokens":{rng.randint(10, 4000)},'
            f'"cache_read_tokens":0,"cache_write_tokens":0,"cost_nanos":{rng.randint(1, 10**9)}}}').encode()


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    old = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 21
    old_ef = load("old_event_fast", f"{old}/src/compstream/domain/event_fast.py")
    old_jf = load("old_jsonl_fast", f"{old}/src/compstream/replay/jsonl_fast.py", old_ef)
    rng = random.Random(1)
    lines = [_usage_line(i, rng) for i in range(20000)]
    usage = [orjson.loads(line) for line in lines]
    corrections = [dict(d, corrects_event_id="u-0", input_tokens=-d["input_tokens"]) for d in usage]
    grants = [{"type": "grant_issued", "event_id": f"g{i}", "engineer_id": "eng-1", "grant_id": f"G{i}",
               "amount_nanos": 10**9, "effective_at": "2026-01-01T00:00:00.000000Z",
               "expires_at": "2026-02-01T00:00:00.000000Z", "kind": "monthly"} for i in range(20000)]
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    decoded = [dict(d, occurred_at=t0) for d in usage]  # as Avro hands them over
    cases = {"line_event": (old_jf.line_event, new_jf.line_event, lines),
             "build_event usage": (old_ef.build_event, new_ef.build_event, usage),
             "build_event usage (datetimes)": (old_ef.build_event, new_ef.build_event, decoded),
             "build_event correction": (old_ef.build_event, new_ef.build_event, corrections),
             "build_event grant": (old_ef.build_event, new_ef.build_event, grants)}
    for name, (old_fn, new_fn, xs) in cases.items():
        if [repr(old_fn(x)) for x in xs[:500]] != [repr(new_fn(x)) for x in xs[:500]]:
            sys.exit(f"{name}: old and new results differ")
        times: dict[str, list[float]] = {"old": [], "new": []}
        for rep in range(reps):
            order = (("old", old_fn), ("new", new_fn)) if rep % 2 else (("new", new_fn), ("old", old_fn))
            for label, fn in order:
                start = time.perf_counter()
                for x in xs:
                    fn(x)
                times[label].append((time.perf_counter() - start) / len(xs) * 1e9)
        ratios = [n / o for n, o in zip(times["new"], times["old"], strict=True)]
        print(json.dumps({"case": name, "old_ns_min": round(min(times["old"])),
                          "new_ns_min": round(min(times["new"])),
                          "new/old_min": round(min(times["new"]) / min(times["old"]), 3),
                          "new/old_paired_median": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
