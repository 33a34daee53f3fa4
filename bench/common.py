"""Shared helpers of the benchmark harness (bench-only; not part of the package).

Every section prints/returns plain dicts so `bench.run` can put them in one
report. Sections that open the embedded ClickHouse engine (chdb allows one
engine path per process) or whose peak RSS matters run as subprocesses.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

from compstream.codec import encode_event
from compstream.config import Topics
from compstream.domain.events import Event
from compstream.publish import topic_for

LATENESS_S = 6 * 3600  # the worker's default COMPSTREAM_LATENESS_S


def code_revision() -> str:
    """The commit measured, with " + uncommitted changes" when src/ or bench/
    differ from it (so a report names the code its figures belong to); "?"
    outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "bench"],
                               cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return rev + (" + uncommitted changes" if dirty else "")


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = "?"
    try:
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_gib = round(int(m.group(1)) / 2**20, 1) if m else "?"
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    out = {
        "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem_gib,
        "python": sys.version.split()[0], "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
    }
    out["code"] = code_revision()
    try:
        from compstream.broker.jars import KAFKA_VERSION
        out["kafka"] = KAFKA_VERSION
    except Exception:  # pragma: no cover
        out["kafka"] = "?"
    for mod in ("aiokafka", "confluent_kafka", "quixstreams", "faust", "fastavro", "avro", "chdb",
                "clickhouse_connect"):
        try:
            m = __import__(mod)
            v = getattr(m, "__version__", None)
            if mod == "confluent_kafka":
                v = f"{m.version()[0]} (librdkafka {m.libversion()[0]})"
            if v is None:
                from importlib.metadata import version
                v = version({"faust": "faust-streaming"}.get(mod, mod))
            out[f"v_{mod}"] = v
        except Exception:
            out[f"v_{mod}"] = "missing"
    return out


def bench_topics(label: str) -> Topics:
    """Fresh topic names under `bench.<label>.<time>`."""
    return Topics.with_prefix(f"bench.{label}.{int(time.time() * 1000) % 10**9}")


def confluent_producer(bootstrap: str, linger_ms: int = 20):
    from confluent_kafka import Producer

    # murmur2_random == the Java/kafka-python default partitioner for keyed
    # records: the worker's partition_of() (and its sweep) rely on it.
    return Producer({
        "bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all",
        "linger.ms": linger_ms, "batch.num.messages": 10000, "queue.buffering.max.messages": 500000,
        "queue.buffering.max.kbytes": 1048576, "compression.type": "none",
        "enable.idempotence": True,
    })


def produce(bootstrap: str, topics: Topics, events: Iterable[Event], rate: float | None = None,
            on_delivered=None, producer=None) -> dict:
    """Encode (project codec) and produce every event keyed by engineer_id;
    optionally paced at `rate` events/s. Returns counts and timing. Every
    delivery is confirmed (flush + error check). `on_delivered(event, ts_ms)`
    gets the record's Kafka timestamp (CreateTime, set at produce()).
    `producer`: one already connected (a latency run's: a new producer's
    first deliveries wait ~0.1-0.7 s for its connection and idempotent
    producer id, which a paced run would count as the worker's latency)."""
    # paced: linger like compstream.publish (5 ms); bulk: bigger batches
    p = producer or confluent_producer(bootstrap, linger_ms=5 if rate else 20)
    errors: list = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    n = 0
    size = 0
    t0 = time.perf_counter()
    for event in events:
        value = encode_event(event)
        size += len(value)
        if on_delivered is not None:
            def cb_ts(err, msg, _e=event):
                if err is not None:
                    errors.append(err)
                else:
                    on_delivered(_e, msg.timestamp()[1])
        while True:
            try:
                p.produce(topic_for(event, topics), value=value, key=event.engineer_id.encode(),
                          on_delivery=cb if on_delivered is None else cb_ts)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if rate:
            target = t0 + n / rate
            delay = target - time.perf_counter()
            if delay > 0.001:
                p.poll(0)
                time.sleep(delay)
        if n % 5000 == 0:
            p.poll(0)
    remaining = p.flush(120)
    dt = time.perf_counter() - t0
    if errors or remaining:
        raise RuntimeError(f"produce failed: {remaining} undelivered, errors {errors[:3]}")
    return {"events": n, "seconds": round(dt, 2), "events_per_s": round(n / dt),
            "avg_value_bytes": round(size / max(n, 1), 1)}


def expected_counts(events: Iterable[Event]) -> Counter:
    """engineer -> events applied once all are in (== BalanceUpdate.events_applied)."""
    return Counter(e.engineer_id for e in events)


def end_offsets(bootstrap: str, names: list[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets", "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=30)
        out = {}
        for name in names:
            for p in md.topics[name].partitions:
                out[(name, p)] = _high_watermark(c, TopicPartition(name, p))
        return out
    finally:
        c.close()


def _high_watermark(consumer, tp, wait_s: float = 30.0) -> int:
    """A just-created topic's partition may have no leader yet
    (NOT_LEADER_FOR_PARTITION / LEADER_NOT_AVAILABLE): wait for it."""
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=30)[1]
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args else None
            if code not in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE) \
                    or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def committed(bootstrap: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for attempt in range(COMMITTED_ATTEMPTS_MAX):
            try:
                res = c.committed([TopicPartition(t, p) for t, p in tps], timeout=30)
                return {(r.topic, r.partition): r.offset for r in res}
            except KafkaException as exc:
                # NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS while the
                # group coordinator moves or loads: ask again.
                err = exc.args[0]
                if not (err.retriable() or err.code() in COORDINATOR_MOVING) or attempt == COMMITTED_ATTEMPTS_MAX - 1:
                    raise
                time.sleep(0.5)
        raise RuntimeError("unreachable")
    finally:
        c.close()


COMMITTED_ATTEMPTS_MAX = 20
COORDINATOR_MOVING = (14, 15, 16)  # load in progress, not available, not coordinator


def run_json(args: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run `python <args>` and parse the last stdout line as JSON; adds the
    child's peak RSS (ru_maxrss of the reaped child)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    out = json.loads(lines[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out.setdefault("_wall_s", round(wall, 2))
    if after > before:  # ru_maxrss of children is the max over all reaped children
        out.setdefault("_child_peak_rss_mib", round(after / 1024, 1))
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def vm_hwm_mib(pid: int) -> float | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        return round(int(m.group(1)) / 1024, 1) if m else None
    except OSError:
        return None


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (a worker's history loader process)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


# -- CPU by process: where a run's CPU went across the machine's processes --

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_s(pid: int, tid: int | None = None) -> float | None:
    """User + system CPU seconds of a process (all its threads, live and
    exited) or of one of its threads, from /proc; None where unreadable."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def worker_cpu_s(pid: int) -> dict[str, float]:
    """A worker process's CPU seconds by where they ran: `main` (the Python
    main thread, which holds the step), `librdkafka` (its rdk:* threads:
    fetch, produce, compression), `other` (every other thread, exited ones
    included), and `loader` (its child processes: the embedded history
    loader). Empty if the process is gone."""
    total = cpu_s(pid)
    if total is None:
        return {}
    main = cpu_s(pid, pid) or 0.0
    rdk = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if int(task.name) != pid and (task / "comm").read_text().startswith("rdk:"):
                    rdk += cpu_s(pid, int(task.name)) or 0.0
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    loader = sum(cpu_s(c) or 0.0 for c in child_pids(pid))
    return {"main": main, "librdkafka": rdk, "other": max(0.0, total - main - rdk), "loader": loader}


def harness_cpu_s() -> float:
    """This process's own CPU seconds (the bench: its producer and observer threads)."""
    t = os.times()
    return t.user + t.system


def cpu_between(before: dict[str, float], after: dict[str, float], events: int, wall_s: float) -> dict:
    """Per process (the keys of `after`): CPU seconds between two snapshots,
    µs of CPU per event and the share of one CPU (seconds ÷ wall); `total`
    sums them, and `events_per_s_max` is what the machine's CPUs could do at
    that total CPU per event if every CPU were busy."""
    out: dict = {}
    total = 0.0
    for name, t in after.items():
        spent = max(0.0, t - before.get(name, 0.0))
        total += spent
        out[name] = {"cpu_s": round(spent, 2), "us_per_event": round(spent / events * 1e6, 1) if events else None,
                     "cpus": round(spent / wall_s, 2) if wall_s > 0 else None}
    per_event = total / events if events else None
    out["total"] = {"cpu_s": round(total, 2), "us_per_event": round(per_event * 1e6, 1) if per_event else None,
                    "cpus": round(total / wall_s, 2) if wall_s > 0 else None}
    out["events_per_s_max"] = round((os.cpu_count() or 1) / per_event) if per_event else None
    out["wall_s"] = round(wall_s, 2)
    return out
