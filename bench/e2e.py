"""End to end: the real worker (`python -m compstream.cli.main worker`) as a
subprocess against the local broker.

throughput(): the events are already on the source topics (a backlog); start
the worker and wait until its consumer group committed every source offset.
Sustained rate = events / (last balance record time - first balance record
time) on the balance topic (record CreateTime set by the worker's producer);
the wall time from spawning the worker (incl. Faust start-up and group join) is
reported too. Verified: the last BalanceUpdate per engineer carries
events_applied == that engineer's event count, and the history holds one
`events` row per event (read from the worker's chdb path after it stopped).

latency(): worker started first and idle; grants produced and applied; then
usage offered at a fixed rate. Per usage event: latency = CreateTime of the
first BalanceUpdate of its engineer whose events_applied covers it minus the
CreateTime of the source record (both Kafka timestamps, ms). Also the
cause_event_id-matched subset (the last event of an engineer in a batch).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from bisect import bisect_left
from collections import Counter, defaultdict
from pathlib import Path

from compstream.codec import decode_record
from compstream.config import Topics

from bench.common import (
    committed, end_offsets, expected_counts, percentile, produce, vm_hwm_mib,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    def __init__(self, bootstrap: str, topics: Topics, data_dir: Path, group: str, partitions: int,
                 loglevel: str = "WARNING", env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.group = group
        self.dsn = f"chdb://{data_dir / 'clickhouse'}"
        self.env = dict(
            os.environ,
            COMPSTREAM_DATA_DIR=str(data_dir), COMPSTREAM_KAFKA_BOOTSTRAP=bootstrap,
            COMPSTREAM_TOPIC_PREFIX=topics.prefix, COMPSTREAM_WORKER_ID=group,
            COMPSTREAM_SOURCE_PARTITIONS=str(partitions), COMPSTREAM_WEB_PORT=str(_free_port()),
            COMPSTREAM_CLICKHOUSE_DSN=self.dsn,
            **(env or {}),
        )
        self.loglevel = loglevel
        self.proc: subprocess.Popen | None = None
        self.hwm_mib: float | None = None

    def start(self) -> "Worker":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "worker.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compstream.cli.main", "worker", "--loglevel", self.loglevel],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return self

    def sample(self) -> None:
        if self.proc and self.proc.poll() is None:
            v = vm_hwm_mib(self.proc.pid)
            if v is not None:
                self.hwm_mib = max(self.hwm_mib or 0, v)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 60) -> int | None:
        if self.proc is None:
            return None
        self.sample()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.data_dir / "worker.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Stalled(RuntimeError):
    """The worker's committed offsets stopped moving short of the end."""


def wait_committed(bootstrap: str, workers: "Worker | list[Worker]", source: list[str], timeout_s: float,
                   stall_s: float = 90.0) -> float:
    """Poll the worker group's committed offsets until they reach the end
    offsets of the source topics; returns the monotonic time it happened.
    Raises Stalled when they stop moving for stall_s (the worker idles with
    records left: seen in the runs, see the report)."""
    workers = workers if isinstance(workers, list) else [workers]
    worker = workers[0]
    ends = end_offsets(bootstrap, source)
    tps = list(ends)
    deadline = time.monotonic() + timeout_s
    last, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        for w in workers:
            w.sample()
            if not w.alive():
                raise RuntimeError(f"worker exited {w.proc.returncode}:\n{w.log_tail()}")
        got = committed(bootstrap, worker.group, tps)
        if all(hi == 0 or got.get(tp, -1) >= hi for tp, hi in ends.items()):
            return time.monotonic()
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            short = {f"{t}:{p}": (got.get((t, p)), hi) for (t, p), hi in ends.items()
                     if got.get((t, p), -1) < hi and hi}
            raise Stalled(f"committed offsets unchanged for {stall_s:.0f}s short of the end "
                          f"(committed, end): {short}")
        time.sleep(0.5)
    raise TimeoutError(f"worker did not commit all source offsets within {timeout_s}s:\n{worker.log_tail()}")


def read_topic(bootstrap: str, topic: str, decode: bool = True, last_per_key: bool = False):
    """Everything on `topic` now: list of (key, timestamp_ms, record|None)."""
    from confluent_kafka import Consumer, TopicPartition

    ends = end_offsets(bootstrap, [topic])
    total = sum(ends.values())
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    out = []
    last: dict = {}
    seen = 0
    deadline = time.monotonic() + 300
    try:
        while seen < total and time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=1.0):
                if m.error() is not None:
                    continue
                seen += 1
                item = (m.key(), m.timestamp()[1], m.value())
                if last_per_key:
                    last[m.key()] = item
                else:
                    out.append(item)
    finally:
        c.close()
    items = list(last.values()) if last_per_key else out
    if decode:
        items = [(k, ts, decode_record(v)[1] if v is not None else None) for k, ts, v in items]
    return items, seen, total


def topic_records(bootstrap: str, name: str) -> int:
    """Records written to `name` so far (0 if it does not exist)."""
    try:
        return sum(end_offsets(bootstrap, [name]).values())
    except KeyError:
        return 0


def history_counts(dsn: str) -> dict:
    code = ("import json,sys; from compstream.history import open_history; "
            "s=open_history(sys.argv[1]); print(json.dumps(s.table_counts())); s.close()")
    proc = subprocess.run([sys.executable, "-c", code, dsn], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"error": proc.stderr[-500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def balance_stats(bootstrap: str, topics: Topics, expected: Counter) -> dict:
    items, seen, total = read_topic(bootstrap, topics.balances, decode=False)
    ts = [t for _k, t, _v in items]
    last: dict = {}
    for k, _t, v in items:
        last[k] = v
    applied = {k.decode(): decode_record(v)[1]["events_applied"] for k, v in last.items()}
    wrong_list = [(e, n, applied.get(e)) for e, n in expected.items() if applied.get(e) != n]
    wrong = len(wrong_list)
    return {"wrong_examples": wrong_list[:5], "balance_records": seen,
            "first_ms": min(ts) if ts else None, "last_ms": max(ts) if ts else None,
            "engineers_with_balance": len(applied), "engineers_wrong_count": wrong}


def _is_book_key(key: bytes | None) -> bool:
    """An engineer's book, not a position/stream-time record (Faust writes
    table keys as JSON strings)."""
    from compstream.worker.positions import is_position_key

    try:
        text = json.loads(key) if key else ""
    except ValueError:
        return True
    return not (isinstance(text, str) and is_position_key(text))


def changelog_state(bootstrap: str, group: str) -> dict:
    topic = f"{group}-books-changelog"
    try:
        items, _seen, _total = read_topic(bootstrap, topic, decode=False, last_per_key=True)
    except Exception as exc:  # noqa: BLE001
        return {"error": repr(exc)}
    sizes = [len(v) for k, _t, v in items if v and _is_book_key(k)]
    if not sizes:
        return {"engineers": 0}
    return {"engineers": len(sizes), "avg_bytes": round(sum(sizes) / len(sizes), 1), "max_bytes": max(sizes)}


def throughput(bootstrap: str, topics: Topics, events_list: list, partitions: int,
               timeout_s: float = 3600, workers: int = 1, env: dict[str, str] | None = None) -> dict:
    """`workers` processes in one group (each with its own embedded history);
    `env`: extra worker settings (e.g. COMPSTREAM_LEADERBOARDS=off)."""
    expected = expected_counts(events_list)
    n = len(events_list)
    tmp = Path(tempfile.mkdtemp(prefix="bench_worker."))
    group = f"bench-worker-{uuid.uuid4().hex[:6]}"
    procs = [Worker(bootstrap, topics, tmp / f"w{i}", group, partitions, env=env) for i in range(workers)]
    out: dict = {"events": n, "engineers": len(expected), "workers": workers, "env": dict(env or {})}
    try:
        t_spawn = time.monotonic()
        for w in procs:
            w.start()
        try:
            t_done = wait_committed(bootstrap, procs, [topics.usage, topics.grants], timeout_s)
        except Stalled as exc:
            out["stalled"] = str(exc)
            t_done = time.monotonic()
        out["wall_from_spawn_s"] = round(t_done - t_spawn, 2)
        out["wall_from_spawn_events_per_s"] = round(n / (t_done - t_spawn))
        for w in procs:
            w.sample()
        out["worker_peak_rss_mib"] = max((w.hwm_mib or 0) for w in procs) or None
    finally:
        rcs = [w.stop() for w in procs]
    out["worker_exit"] = rcs[0] if workers == 1 else rcs
    bal = balance_stats(bootstrap, topics, expected)
    out.update(bal)
    if bal["first_ms"] is not None and bal["last_ms"] > bal["first_ms"]:
        span = (bal["last_ms"] - bal["first_ms"]) / 1000
        out["sustained_s"] = round(span, 2)
        out["sustained_events_per_s"] = round(n / span)
    counts = [history_counts(w.dsn) for w in procs]
    out["history"] = counts[0] if workers == 1 else counts
    # With several workers a batch redelivered after a rebalance can be in two
    # stores; every event must be in at least one.
    stored = sum(c.get("events", 0) for c in counts)
    out["history_events_ok"] = stored == n if workers == 1 else stored >= n
    out["state_from_changelog"] = changelog_state(bootstrap, group)
    out["leaderboard_candidate_records"] = topic_records(bootstrap, topics.leaderboard_candidates)
    out["worker_log_tail"] = procs[0].log_tail(5)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def latency(bootstrap: str, topics: Topics, events_list: list, partitions: int, rate: float) -> dict:
    """events_list: grants first, then usage (in order). The grants already in
    effect when the usage starts go first, unpaced; then the usage, paced.
    Grants effective later are left out, as in every run so far, so the
    figures stay comparable (the worker would keep them pending, out of the
    balances, until usage time reaches them)."""
    first_usage = next(i for i, e in enumerate(events_list) if e.type == "usage")
    start = events_list[first_usage].event_time
    pre = [e for e in events_list[:first_usage] if e.event_time <= start]
    paced = [e for e in events_list[first_usage:] if e.type == "usage"]
    ordinal: dict[str, int] = {}
    counts: Counter = Counter()
    for e in pre + paced:
        counts[e.engineer_id] += 1
        ordinal[e.event_id] = counts[e.engineer_id]
    tmp = Path(tempfile.mkdtemp(prefix="bench_worker_lat."))
    group = f"bench-lat-{uuid.uuid4().hex[:6]}"
    worker = Worker(bootstrap, topics, tmp, group, partitions)
    sent: dict[str, int] = {}
    out: dict = {"offered_events_per_s": rate, "paced_events": len(paced), "grants_before": len(pre),
                 "grants_left_out": first_usage - len(pre)}
    try:
        worker.start()
        produce(bootstrap, topics, pre)
        wait_committed(bootstrap, worker, [topics.usage, topics.grants], 300)
        time.sleep(2)  # let the sweep settle

        res = produce(bootstrap, topics, paced, rate=rate,
                      on_delivered=lambda e, ts: sent.__setitem__(e.event_id, ts))
        out["achieved_offered_events_per_s"] = res["events_per_s"]
        try:
            wait_committed(bootstrap, worker, [topics.usage, topics.grants], 900)
        except Stalled as exc:
            out["stalled"] = str(exc)
        worker.sample()
        out["worker_peak_rss_mib"] = worker.hwm_mib
    finally:
        worker.stop()
    alerts, _seen, _total = read_topic(bootstrap, topics.alerts)
    out["late_reports"] = sum(1 for _k, _ts, rec in alerts if rec["kind"] == "report:late")
    items, _seen, _total = read_topic(bootstrap, topics.balances)
    per_eng: dict[str, list] = defaultdict(list)
    by_cause: dict[str, int] = {}
    for k, ts, rec in items:
        per_eng[k.decode()].append((rec["events_applied"], ts))
        if rec["cause_event_id"] and rec["cause_event_id"] not in by_cause:
            by_cause[rec["cause_event_id"]] = ts
    for lst in per_eng.values():
        lst.sort()
    lat = []
    missing = 0
    for e in paced:
        src = sent.get(e.event_id)
        lst = per_eng.get(e.engineer_id, [])
        i = bisect_left(lst, (ordinal[e.event_id], -1))
        if src is None or i >= len(lst):
            missing += 1
            continue
        lat.append(lst[i][1] - src)
    cause = [by_cause[e.event_id] - sent[e.event_id] for e in paced if e.event_id in by_cause and e.event_id in sent]
    out.update({
        "matched": len(lat), "unmatched": missing,
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
        "cause_matched": len(cause), "cause_p50_ms": percentile(cause, 50), "cause_p99_ms": percentile(cause, 99),
    })
    shutil.rmtree(tmp, ignore_errors=True)
    return out
