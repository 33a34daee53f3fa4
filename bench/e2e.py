"""End to end: the real worker (`python -m compstream.cli.main worker`) as a
subprocess against the local broker.

throughput(): the events are already on the source topics (a backlog); start
the worker and wait until its consumer group committed every source offset.
Sustained rate = the events the first checkpoint's balances do not cover /
(last balance record time - the end of the first checkpoint's burst of balance
records) on the balance topic (record CreateTime set by the worker's producer;
`sustained_rate`); the wall time from spawning the worker (incl. start-up and
group join) is reported too. Verified: the last BalanceUpdate per engineer carries
events_applied == that engineer's event count, and the history holds one
`events` row per event (read from the worker's chdb path after it stopped).

latency(): worker started first and idle; grants produced and applied; then
usage offered at a fixed rate. Per usage event: latency = CreateTime of the
first BalanceUpdate of its engineer whose events_applied covers it minus the
CreateTime of the source record (both Kafka timestamps, ms). Also the
cause_event_id-matched subset (the last event of an engineer in a batch),
and the latency to *visible*: when a read_committed consumer in the harness
received that BalanceUpdate (wall clock, same machine) minus the source
record's CreateTime. For the transactional engine only the visible figure
counts: its records carry the time they were produced into the still open
transaction, not the time the transaction committed.

Engines: `env` selects one (COMPSTREAM_ENGINE=faust|transactional). For the
transactional engine throughput() also waits until the embedded history
loader has loaded every committed history record, and can restart a worker
on the same group to time the restore of its books from the changelog.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from bisect import bisect_left
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from bench.common import (
    child_pids,
    committed,
    confluent_producer,
    cpu_between,
    cpu_s,
    end_offsets,
    expected_counts,
    harness_cpu_s,
    percentile,
    produce,
    vm_hwm_mib,
    worker_cpu_s,
)
from compstream.broker import runtime
from compstream.broker.runtime import BrokerInfo
from compstream.codec import decode_record
from compstream.config import Topics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_broker(prefix: str, partitions: int) -> Iterator[BrokerInfo]:
    """A broker of its own for a bench run (temp data dir, free ports),
    stopped and removed on exit."""
    broker_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        info = runtime.start(broker_dir, port=_free_port(), controller_port=_free_port(),
                             partitions=partitions, timeout_s=180, heap="1g")
        _BROKER_PIDS[info.bootstrap] = info.pid
        yield info
    finally:
        runtime.stop(broker_dir)
        shutil.rmtree(broker_dir, ignore_errors=True)


# bootstrap -> pid of a broker this process started (its CPU is counted in
# the runs' CPU by process; a broker given with --bootstrap is not).
_BROKER_PIDS: dict[str, int] = {}


def cpu_snapshot(bootstrap: str, worker: "Worker | None") -> dict[str, float]:
    """CPU seconds so far of the worker's threads and loader, the broker
    (if started here) and this harness process."""
    out = {f"worker_{k}" if k != "loader" else "loader": v
           for k, v in (worker.cpu() if worker is not None else {}).items()}
    pid = _BROKER_PIDS.get(bootstrap)
    broker = cpu_s(pid) if pid is not None else None
    if broker is not None:
        out["broker"] = broker
    out["harness"] = harness_cpu_s()
    return out


class Worker:
    def __init__(self, bootstrap: str, topics: Topics, data_dir: Path, group: str, partitions: int,
                 loglevel: str = "WARNING", env: dict[str, str] | None = None, profile: bool = False):
        if (env or {}).get("COMPSTREAM_ENGINE") not in ("faust", "transactional"):
            raise ValueError(f"a bench worker names its engine (COMPSTREAM_ENGINE in env), got {env!r}")
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
        self.loader_hwm_mib: float | None = None  # its history loader process (embedded sink)
        self.profile = profile
        self.spy: subprocess.Popen | None = None
        self.spy_path = data_dir / "py-spy.txt"

    def start(self) -> "Worker":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "worker.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compstream.cli.main", "worker", "--loglevel", self.loglevel],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        if self.profile:
            self.spy = start_py_spy(self.proc.pid, self.spy_path, self.data_dir / "py-spy.log")
        return self

    def sample(self) -> None:
        if self.proc and self.proc.poll() is None:
            v = vm_hwm_mib(self.proc.pid)
            if v is not None:
                self.hwm_mib = max(self.hwm_mib or 0, v)
            for child in child_pids(self.proc.pid):
                v = vm_hwm_mib(child)
                if v is not None:
                    self.loader_hwm_mib = max(self.loader_hwm_mib or 0, v)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by thread group and its loader (common.worker_cpu_s)."""
        return worker_cpu_s(self.proc.pid) if self.alive() else {}

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
        if self.spy is not None:
            try:  # py-spy writes its file when the profiled process is gone
                self.spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.spy.send_signal(signal.SIGINT)
                self.spy.wait(timeout=30)
        return self.proc.returncode

    def instance(self) -> str | None:
        """The transactional engine's per-data-dir instance id (names its
        transactional id and its embedded history loader's group)."""
        try:
            return (self.data_dir / "worker-instance").read_text().strip() or None
        except OSError:
            return None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.data_dir / "worker.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


PY_SPY_RATE_HZ = 100


def py_spy_path() -> str | None:
    """py-spy next to this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, out: Path, log: Path) -> subprocess.Popen | None:
    """Sample `pid` until it exits: raw (collapsed) stacks per thread, idle
    samples included, so shares are of wall time. Attaching needs ptrace
    rights (root here). --nonblocking: the worker is never paused."""
    exe = py_spy_path()
    if exe is None:
        return None
    return subprocess.Popen([exe, "record", "-p", str(pid), "-r", str(PY_SPY_RATE_HZ), "-f", "raw", "-o", str(out),
                             "--threads", "--idle", "--nonblocking"],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _frame_name(frame: str) -> str:
    """'fn (path/to/mod.py:123)' -> 'fn (mod.py)': one row per function."""
    name, _, where = frame.rpartition(" (")
    if not name:
        return frame
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({file.rsplit('/', 1)[-1]})"


def profile_summary(path: Path, thread: str = "MainThread", top: int = 25) -> dict:
    """Inclusive and self shares of `thread`'s samples per function from a
    py-spy raw file; plus every thread's share of the samples."""
    inclusive: Counter = Counter()
    depth: dict[str, int] = {}
    own: Counter = Counter()
    threads: Counter = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return {"error": repr(exc)}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        name = frames[0].split(": ", 1)[-1]  # 'thread (123): MainThread'
        threads[name] += count
        if name != thread:
            continue
        total += count
        names = [_frame_name(f) for f in frames[1:]]
        for i, fn in enumerate(names):
            depth.setdefault(fn, i)
        for fn in set(names):
            inclusive[fn] += count
        if names:
            own[names[-1]] += count
    if not total:
        return {"error": f"no samples of {thread}", "threads": dict(threads)}
    pct = lambda c: round(100 * c / total, 1)  # noqa: E731
    # The entry point's wrappers (runpy, the CLI framework) hold ~every
    # sample: keep only the deepest of them.
    wrappers = [fn for fn, c in inclusive.items() if c >= 0.9 * total]
    deepest = max(wrappers, key=lambda fn: depth.get(fn, 0)) if wrappers else None
    rows = [(fn, c) for fn, c in inclusive.most_common() if fn not in wrappers or fn == deepest]
    return {"thread": thread, "samples": total, "rate_hz": PY_SPY_RATE_HZ,
            "threads": {k: v for k, v in threads.most_common(8)},
            "inclusive_pct": [(fn, pct(c)) for fn, c in rows[:top]],
            "self_pct": [(fn, pct(c)) for fn, c in own.most_common(top)]}


def history_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True when `group` (a history loader) has committed past every
    committed record of `topic`: read_committed from its committed offsets
    finds nothing before each partition's end. (Its committed offset can stay
    below the high watermark: a transaction's commit marker takes an offset.)"""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
    try:
        parts = sorted(c.list_topics(topic, timeout=30).topics[topic].partitions)
        start = c.committed([TopicPartition(topic, p) for p in parts], timeout=30)
        c.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else -2) for tp in start])
        at_end: set[int] = set()
        deadline = time.monotonic() + 30
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    return False
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
        return len(at_end) == len(parts)
    finally:
        c.close()


def wait_history(bootstrap: str, worker: "Worker", topic: str, timeout_s: float) -> float | None:
    """Monotonic time at which the worker's embedded history loader had
    loaded everything committed to `topic`; None if not within timeout_s."""
    instance = worker.instance()
    if instance is None:
        return None
    group = f"{worker.group}-history-{instance}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.sample()
        if not worker.alive():
            raise RuntimeError(f"worker exited {worker.proc.returncode}:\n{worker.log_tail()}")
        if history_caught_up(bootstrap, group, topic):
            return time.monotonic()
        time.sleep(0.5)
    return None


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
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    ends = end_offsets(bootstrap, [topic])
    total = sum(ends.values())
    # read_committed: a transactional engine's aborted batches are not output
    # (the same as read_uncommitted for a producer without transactions).
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "fetch.queue.backoff.ms": 10})
    c.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    out = []
    last: dict = {}
    seen = 0
    # Offsets count transaction markers (and aborted records) too: done at
    # the end-of-partition signal of every partition, not at `total` records.
    open_parts = {tp for tp, hi in ends.items() if hi > 0}
    deadline = time.monotonic() + 300
    try:
        while open_parts and time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=1.0):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF and m.offset() >= ends[(m.topic(), m.partition())]:
                        open_parts.discard((m.topic(), m.partition()))
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


# Balance records of one checkpoint are produced within milliseconds; the
# next checkpoint's come a whole batch step later (seconds in a backlog).
BURST_GAP_MS = 500


def first_burst(items: list, applied_of: Callable[[bytes], int], gap_ms: int = BURST_GAP_MS) -> tuple[int, int]:
    """(end time ms, events covered) of the first burst of balance records
    (key, CreateTime ms, value): the records up to the first gap longer than
    `gap_ms`, i.e. the first checkpoint's balances. Covered: the sum over
    engineers of the events_applied of their last record in it."""
    ordered = sorted(items, key=lambda item: item[1])
    end = ordered[0][1]
    covered: dict = {}
    for key, t, value in ordered:
        if t - end > gap_ms:
            break
        end = t
        covered[key] = max(covered.get(key, 0), applied_of(value))
    return end, sum(covered.values())


def sustained_rate(items: list, events: int, applied_of: Callable[[bytes], int]) -> tuple[float, int] | None:
    """(seconds, events a second) from the end of the first burst of balance
    records to the last record, counting only the events not covered by the
    first burst: that burst's events were processed before its records'
    CreateTime, so counting them over the span (events / (last - first))
    overstated the rate by about one batch's share of the run (4 % at 40,000
    events of 1M; 12 % at 120,000). None with one burst only."""
    if not items:
        return None
    end, covered = first_burst(items, applied_of)
    last = max(t for _k, t, _v in items)
    if last <= end:
        return None
    span = (last - end) / 1000
    return span, round((events - covered) / span)


def _events_applied(value: bytes) -> int:
    return int(decode_record(value)[1]["events_applied"])


def balance_stats(bootstrap: str, topics: Topics, expected: Counter) -> dict:
    items, seen, total = read_topic(bootstrap, topics.balances, decode=False)
    ts = [t for _k, t, _v in items]
    last: dict = {}
    for k, _t, v in items:
        last[k] = v
    applied = {k.decode(): decode_record(v)[1]["events_applied"] for k, v in last.items()}
    wrong_list = [(e, n, applied.get(e)) for e, n in expected.items() if applied.get(e) != n]
    wrong = len(wrong_list)
    rate = sustained_rate(items, sum(expected.values()), _events_applied)
    return {"wrong_examples": wrong_list[:5], "balance_records": seen,
            "first_ms": min(ts) if ts else None, "last_ms": max(ts) if ts else None,
            "sustained": rate,
            "engineers_with_balance": len(applied), "engineers_wrong_count": wrong}


def _is_book_key(key: bytes | None) -> bool:
    """An engineer's book, not a position/stream-time record (Faust writes
    table keys as JSON strings)."""
    from compstream.worker.positions import is_position_key

    try:
        text = json.loads(key) if key else ""
    except ValueError:  # the transactional engine writes raw UTF-8 keys
        text = key.decode("utf-8", "replace")
    return not (isinstance(text, str) and is_position_key(text))


def changelog_state(bootstrap: str, group: str) -> dict:
    topic = f"{group}-books-changelog"
    try:
        items, _seen, _total = read_topic(bootstrap, topic, decode=False, last_per_key=True)
    except Exception as exc:  # noqa: BLE001
        return {"error": repr(exc)}
    from compstream.worker.book_changelog import engineer_of

    per_engineer: dict[str, int] = {}  # a busy book is a head and its segments
    for k, _t, v in items:
        if v and k and _is_book_key(k):
            engineer = engineer_of(k.decode("utf-8", "replace"))
            per_engineer[engineer] = per_engineer.get(engineer, 0) + len(v)
    sizes = list(per_engineer.values())
    if not sizes:
        return {"engineers": 0}
    return {"engineers": len(sizes), "avg_bytes": round(sum(sizes) / len(sizes), 1), "max_bytes": max(sizes)}


TRANSACTIONAL = {"COMPSTREAM_ENGINE": "transactional", "COMPSTREAM_LEADERBOARDS": "off"}
# Every run names its engine: a run without one took the worker's default,
# which became the transactional engine, while the report still said Faust.
FAUST = {"COMPSTREAM_ENGINE": "faust"}


def is_transactional(env: dict[str, str] | None) -> bool:
    return (env or {}).get("COMPSTREAM_ENGINE") == "transactional"


def history_topic_of(topics: Topics) -> str:
    from compstream.worker.core.checkpoint import history_topic

    return history_topic(topics)


def throughput(bootstrap: str, topics: Topics, events_list: list, partitions: int,
               timeout_s: float = 3600, workers: int = 1, env: dict[str, str] | None = None,
               profile: bool = False, restart: bool = False) -> dict:
    """`workers` processes in one group (each with its own embedded history);
    `env`: extra worker settings (e.g. COMPSTREAM_LEADERBOARDS=off, or
    TRANSACTIONAL). `profile`: py-spy samples the (first) worker for the whole
    run. `restart` (transactional engine): afterwards a new worker process on
    the same group restores the books from the changelog; timed to the last
    partition restored."""
    expected = expected_counts(events_list)
    n = len(events_list)
    tmp = Path(tempfile.mkdtemp(prefix="bench_worker."))
    group = f"bench-worker-{uuid.uuid4().hex[:6]}"
    procs = [Worker(bootstrap, topics, tmp / f"w{i}", group, partitions, env=env, profile=profile and i == 0)
             for i in range(workers)]
    txn = is_transactional(env)
    out: dict = {"events": n, "engineers": len(expected), "workers": workers, "env": dict(env or {})}
    try:
        cpu0 = cpu_snapshot(bootstrap, None)
        t_spawn = time.monotonic()
        for w in procs:
            w.start()
        try:
            t_done = wait_committed(bootstrap, procs, [topics.usage, topics.grants], timeout_s)
        except Stalled as exc:
            out["stalled"] = str(exc)
            t_done = time.monotonic()
        if workers == 1:  # spawn -> balances done (the rebuild), by process
            out["cpu"] = cpu_between(cpu0, cpu_snapshot(bootstrap, procs[0]), n, t_done - t_spawn)
        out["wall_from_spawn_s"] = round(t_done - t_spawn, 2)
        out["wall_from_spawn_events_per_s"] = round(n / (t_done - t_spawn))
        # Both engines publish history through the topic; wait for the embedded loader.
        if (env or {}).get("COMPSTREAM_HISTORY_SINK", "embedded") == "embedded" and workers == 1:
            t_hist = wait_history(bootstrap, procs[0], history_topic_of(topics), timeout_s)
            out["history_loaded_from_spawn_s"] = None if t_hist is None else round(t_hist - t_spawn, 2)
            out["history_topic_records"] = topic_records(bootstrap, history_topic_of(topics))
        for w in procs:
            w.sample()
        out["worker_peak_rss_mib"] = max((w.hwm_mib or 0) for w in procs) or None
        out["loader_peak_rss_mib"] = max((w.loader_hwm_mib or 0) for w in procs) or None
    finally:
        rcs = [w.stop() for w in procs]
    out["worker_exit"] = rcs[0] if workers == 1 else rcs
    if profile:
        out["profile"] = profile_summary(procs[0].spy_path)
    bal = balance_stats(bootstrap, topics, expected)
    out.update(bal)
    rate = bal.pop("sustained")
    if rate is not None:
        out["sustained_s"] = round(rate[0], 2)
        out["sustained_events_per_s"] = rate[1]
    if (env or {}).get("COMPSTREAM_HISTORY_SINK") == "external":
        # Left in the history topic: no loader ran, so no store to count.
        out["history"] = "left in the history topic (external sink)"
        out["history_topic_records"] = topic_records(bootstrap, history_topic_of(topics))
        out["history_events_ok"] = None
    else:
        counts = [history_counts(w.dsn) for w in procs]
        out["history"] = counts[0] if workers == 1 else counts
        # With several workers a batch redelivered after a rebalance can be in two
        # stores; every event must be in at least one.
        stored = sum(c.get("events", 0) for c in counts)
        out["history_events_ok"] = stored == n if workers == 1 else stored >= n
    out["state_from_changelog"] = changelog_state(bootstrap, group)
    out["leaderboard_candidate_records"] = topic_records(bootstrap, topics.leaderboard_candidates)
    out["worker_log_tail"] = procs[0].log_tail(5)
    if restart and txn:
        out["restore"] = restore_time(bootstrap, topics, tmp / "restart", group, partitions, env)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def restore_time(bootstrap: str, topics: Topics, data_dir: Path, group: str, partitions: int,
                 env: dict[str, str] | None, timeout_s: float = 600) -> dict:
    """A fresh worker process on a group whose offsets are all committed:
    spawn -> every partition's books restored from the changelog (its own
    log lines). History sink external: its new data dir must not reload the
    history topic meanwhile."""
    env = {**(env or {}), "COMPSTREAM_HISTORY_SINK": "external"}
    w = Worker(bootstrap, topics, data_dir, group, partitions, loglevel="INFO", env=env)
    out: dict = {}
    try:
        t0 = time.monotonic()
        w.start()
        deadline = t0 + timeout_s
        books = []
        while time.monotonic() < deadline:
            if not w.alive():
                raise RuntimeError(f"worker exited {w.proc.returncode}:\n{w.log_tail()}")
            try:
                text = (data_dir / "worker.log").read_text(errors="replace")
            except OSError:
                text = ""
            books = [int(m) for m in re.findall(r"partition \d+ restored: \d+ books from (\d+) changelog records",
                                                text)]
            if len(books) >= partitions:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"books not restored within {timeout_s}s:\n{w.log_tail()}")
        out["spawn_to_restored_s"] = round(time.monotonic() - t0, 2)
        # The engine logs "restored: B books from N changelog records" (a key
        # repeats in the records until the cleaner compacts the topic).
        out["changelog_records"] = sum(books)
        w.sample()
        out["peak_rss_mib"] = w.hwm_mib
    finally:
        w.stop()
    return out


class Observer(threading.Thread):
    """A read_committed consumer of the balances topic in the harness: when
    each BalanceUpdate became visible to a reader (wall clock, ms)."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(name="balance-observer", daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-obs-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "isolation.level": "read_committed",
                                  "fetch.wait.max.ms": 10, "fetch.queue.backoff.ms": 1})
        parts = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, -2) for p in parts])
        self.seen: list[tuple[bytes, bytes, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                msgs = self.consumer.consume(10_000, 0.05)
                now_ms = int(time.time() * 1000)
                self.seen.extend((m.key(), m.value(), now_ms) for m in msgs if m.error() is None)
        finally:
            self.consumer.close()

    def stop(self) -> list[tuple[bytes, bytes, int]]:
        self.stop_event.set()
        self.join(timeout=30)
        return self.seen


def latency(bootstrap: str, topics: Topics, events_list: list, partitions: int, rate: float,
            env: dict[str, str] | None = None) -> dict:
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
    worker = Worker(bootstrap, topics, tmp, group, partitions, env=env)
    sent: dict[str, int] = {}
    out: dict = {"offered_events_per_s": rate, "paced_events": len(paced), "grants_before": len(pre),
                 "grants_left_out": first_usage - len(pre), "env": dict(env or {})}
    observer = None
    visible: list = []
    try:
        worker.start()
        # One producer for both phases: the grants warm it up (connection,
        # metadata, idempotent producer id), so the paced phase times the worker.
        producer = confluent_producer(bootstrap, linger_ms=5)
        producer.list_topics(timeout=30)
        produce(bootstrap, topics, pre, producer=producer)
        wait_committed(bootstrap, worker, [topics.usage, topics.grants], 300)
        time.sleep(2)  # let the sweep settle
        observer = Observer(bootstrap, topics.balances)
        observer.start()

        cpu0, t0 = cpu_snapshot(bootstrap, worker), time.monotonic()
        res = produce(bootstrap, topics, paced, rate=rate,
                      on_delivered=lambda e, ts: sent.__setitem__(e.event_id, ts), producer=producer)
        out["achieved_offered_events_per_s"] = res["events_per_s"]
        try:
            wait_committed(bootstrap, worker, [topics.usage, topics.grants], 900)
        except Stalled as exc:
            out["stalled"] = str(exc)
        # The paced phase and its drain, by process (the harness: the paced
        # producer and the observer, besides the wait).
        out["cpu"] = cpu_between(cpu0, cpu_snapshot(bootstrap, worker), len(paced), time.monotonic() - t0)
        worker.sample()
        out["worker_peak_rss_mib"] = worker.hwm_mib
        out["loader_peak_rss_mib"] = worker.loader_hwm_mib
        time.sleep(1)  # the observer's last fetch
    finally:
        if observer is not None:
            visible = observer.stop()
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
    seen_eng: dict[str, list] = defaultdict(list)
    for k, v, arrival_ms in visible:
        seen_eng[k.decode()].append((decode_record(v)[1]["events_applied"], arrival_ms))
    for lst in seen_eng.values():
        lst.sort()
    vis = []
    by_window: dict[int, list] = defaultdict(list)  # send time's 5 s window -> visible latencies
    first_sent = min(sent.values(), default=0)
    for e in paced:
        src = sent.get(e.event_id)
        lst = seen_eng.get(e.engineer_id, [])
        i = bisect_left(lst, (ordinal[e.event_id], -1))
        if src is not None and i < len(lst):
            vis.append(lst[i][1] - src)
            by_window[(src - first_sent) // 5000].append(lst[i][1] - src)
    # Does the latency grow over the paced phase (the worker falls behind) or
    # stay flat (a fixed cost per batch)? p99 of each 5 s of sending.
    out["visible_p99_ms_by_5s"] = [percentile(by_window[w], 99) for w in sorted(by_window)]
    out.update({
        "visible_matched": len(vis), "visible_p50_ms": percentile(vis, 50), "visible_p99_ms": percentile(vis, 99),
        "visible_max_ms": max(vis) if vis else None,
    })
    out.update({
        "matched": len(lat), "unmatched": missing,
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
        "cause_matched": len(cause), "cause_p50_ms": percentile(cause, 50), "cause_p99_ms": percentile(cause, 99),
    })
    shutil.rmtree(tmp, ignore_errors=True)
    return out
