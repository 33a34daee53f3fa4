"""Rebuild the worker's state from the source topics (the event store).

Steps (the CLI orders them and asks first): stop the data dir's worker;
delete its consumer group (committed offsets gone, so the next worker starts
at the earliest offsets); delete its changelog topics (the books) and wait
until they are really gone (a worker starting meanwhile would recreate a
topic that is still being deleted); wipe `<data dir>/worker`; start a worker;
follow its committed offsets up to the end offsets taken when it started.

History stays exactly once: the sink drops rows at or below the stored Kafka
offset high-water mark (events, dead letters) and posting seq (postings), so
re-processing writes no row twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from compstream.config import Settings
from compstream.processes import pid_alive, pid_cmdline
from compstream.replay.kafka_source import open_consumer, partitions_of
from compstream.worker.run import pid_path, running_pid

POLL_S = 0.5


class RebuildError(RuntimeError):
    """A rebuild step that cannot proceed; the message says what to do."""


def _admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="compstream-rebuild")


def looks_like_worker(pid: int) -> bool:
    """Guards SIGTERM against a stale pid file whose pid was reused."""
    cmdline = pid_cmdline(pid)
    if cmdline is None:
        return True  # no /proc (macOS): the pid file is all we have
    return any(b"compstream" in a for a in cmdline) and any(b"worker" in a for a in cmdline)


def live_worker(settings: Settings) -> int | None:
    pid = running_pid(settings)
    if pid is None or not pid_alive(pid) or not looks_like_worker(pid):
        return None
    return pid


def stop_worker(pid: int, timeout_s: float) -> None:
    """SIGTERM and wait: a clean stop leaves the group at once (no session
    timeout to wait out) and flushes what it has processed."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise RebuildError(f"worker pid {pid} still runs {timeout_s:.0f}s after SIGTERM; "
                               f"check it, or `kill -9 {pid}` and run rebuild again")
        time.sleep(POLL_S)


def start_worker(settings: Settings, loglevel: str = "INFO", timeout_s: float = 60.0) -> int:
    """A detached `compstream worker` logging to `<data dir>/worker.log`;
    returns its pid once it has written its pid file."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "worker.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "compstream.cli.main", "worker", "--loglevel", loglevel],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ))
    deadline = time.monotonic() + timeout_s
    while running_pid(settings) != proc.pid:
        if proc.poll() is not None:
            raise RebuildError(f"worker exited with {proc.returncode} at start; see {log_path}")
        if time.monotonic() > deadline:
            raise RebuildError(f"worker pid {proc.pid} wrote no pid file ({pid_path(settings)}) "
                               f"in {timeout_s:.0f}s; see {log_path}")
        time.sleep(POLL_S)
    return proc.pid


def changelog_topics(settings: Settings) -> list[str]:
    """`<app id>-*-changelog`: Faust's table changelogs of this worker."""
    admin = _admin(settings)
    try:
        prefix = f"{settings.worker_id}-"
        return sorted(t for t in admin.list_topics() if t.startswith(prefix) and t.endswith("-changelog"))
    finally:
        admin.close()


def delete_group(settings: Settings, timeout_s: float) -> str:
    """Delete the worker's consumer group, waiting while it still has members
    (a killed worker stays a member until the session timeout)."""
    group = settings.worker_id
    admin = _admin(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            result = admin.delete_groups([group])
            # kafka-python returns {group: "OK" | error name} (older: [(group, error)]).
            outcome = dict(result).get(group) if not isinstance(result, dict) else result.get(group)
            text = getattr(outcome, "__name__", str(outcome))
            if text in ("OK", "NoError"):
                return "deleted"
            if "GroupIdNotFound" in text:
                return "absent"
            if "NonEmptyGroup" not in text and "CoordinatorLoadInProgress" not in text:
                raise RebuildError(f"deleting consumer group {group} failed: {text}")
            if time.monotonic() > deadline:
                raise RebuildError(f"consumer group {group} still has members after {timeout_s:.0f}s: "
                                   "is another worker of this group running elsewhere?")
            time.sleep(1.0)
    finally:
        admin.close()


def delete_topics_and_wait(settings: Settings, names: list[str], timeout_s: float) -> None:
    if not names:
        return
    from compstream.broker.topics import delete_topics

    delete_topics(settings.kafka_bootstrap, names, timeout_s=timeout_s)
    admin = _admin(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while set(names) & set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise RebuildError(f"topics {names} still exist {timeout_s:.0f}s after deletion")
            time.sleep(POLL_S)
    finally:
        admin.close()


def wipe_local(settings: Settings) -> Path:
    path = settings.data_dir / "worker"
    if path.exists():
        shutil.rmtree(path)
    return path


def keep_decisions(settings: Settings) -> str:
    """Write the stream's decisions from the history topic's first row of
    each event (what history and the statements follow), its refusals (the
    dead-letter topic) and how far it had judged (the group's committed
    offsets) for the rebuilt worker to take again (worker/recorded_late.py).
    Returns what was kept."""
    from datetime import timedelta

    from compstream.ops.diff import Moves, dead_letters_in
    from compstream.replay.kafka_source import read_ranges, resolve_ranges
    from compstream.worker import recorded_late
    from compstream.worker.core.checkpoint import history_topic
    from compstream.worker.positions import PositionRecordError

    topic, dead_letters = history_topic(settings.topics), settings.topics.dead_letters
    consumer = open_consumer(settings.kafka_bootstrap)
    try:
        refused: dict[tuple[str, int, int], str] = {}
        moves: Moves = {}
        if consumer.partitions_for_topic(dead_letters):
            refused, moves = dead_letters_in(
                (r.value for r in read_ranges(consumer, resolve_ranges(consumer, [dead_letters]))), dead_letters)
        if not consumer.partitions_for_topic(topic):
            recorded: recorded_late.RecordedDecisions | None = recorded_late.RecordedDecisions({}, {})
        else:
            records = ((f"{r.topic}[{r.partition}]@{r.offset}", r.value)
                       for r in read_ranges(consumer, resolve_ranges(consumer, [topic])))
            recorded = recorded_late.collect(records, timedelta(seconds=settings.lateness_s), moves)
        through = judged_offsets(settings, consumer)
    except (recorded_late.RecordedLateError, PositionRecordError) as exc:
        raise RebuildError(str(exc)) from exc
    finally:
        consumer.close()
    path = recorded_late.path_of(settings.data_dir)
    fallback = ""
    if recorded is None:
        recorded = recorded_late.RecordedDecisions({}, {})
        fallback = (f"; no late decisions: more than {recorded_late.EVENTS_SEEN_MAX} events on the history topic, "
                    "the rebuild judges late events again (diff names where that leaves balances apart from "
                    "statements)")
    recorded.refused, recorded.through = refused, through
    try:
        recorded_late.write(settings.data_dir, recorded, settings.lateness_s)
    except recorded_late.RecordedLateError as exc:
        raise RebuildError(f"{exc}: too many to keep (runbook, scenario 8)") from exc
    return (f"{len(recorded.late)} late decisions, {sum(len(v) for v in recorded.expected.values())} "
            f"places to hold books back at, {len(refused)} refusals and the positions of "
            f"{len(through)} source partitions ({path}){fallback}")


def judged_offsets(settings: Settings, consumer: KafkaConsumer) -> dict[tuple[str, int], int]:
    """(source topic, partition) -> how far the worker judged every source
    record (applied, refused or a duplicate): the books changelog's position
    records, or the group's committed offset where that is further. Faust can
    leave its commits behind what it processed, or move them past offsets it
    skipped; a rebuild must not take less than the stream judged (below it,
    it repeats the stream's decisions), and more is harmless (there is no
    decision to repeat)."""
    from compstream.replay.kafka_source import read_ranges, resolve_ranges
    from compstream.worker.core.checkpoint import changelog_topic
    from compstream.worker.positions import stored_positions

    sources = (settings.topics.usage, settings.topics.grants)
    out = {(tp.topic, tp.partition): meta.offset for tp, meta in _committed(settings).items()
           if tp.topic in sources and meta is not None and meta.offset >= 0}
    books = changelog_topic(settings.worker_id)
    if consumer.partitions_for_topic(books):
        records = ((r.key, r.value) for r in read_ranges(consumer, resolve_ranges(consumer, [books])))
        for tp, offset in stored_positions(records, sources, settings.source_partitions).items():
            out[tp] = max(offset, out.get(tp, 0))
    return out


def _committed(settings: Settings) -> dict:
    """The worker group's committed offsets: TopicPartition -> OffsetAndMetadata."""
    admin = _admin(settings)
    try:
        return admin.list_group_offsets({settings.worker_id: None}).get(settings.worker_id) or {}
    finally:
        admin.close()


@dataclass(frozen=True)
class CatchUp:
    done: int  # source records at or below the group's committed offsets
    total: int  # source records up to the target end offsets
    behind: tuple[str, ...]  # partitions not there yet

    @property
    def complete(self) -> bool:
        return not self.behind


def end_offsets(settings: Settings) -> dict[TopicPartition, tuple[int, int]]:
    """Source partition -> (beginning, end) offsets, now."""
    consumer = open_consumer(settings.kafka_bootstrap)
    try:
        tps = partitions_of(consumer, [settings.topics.usage, settings.topics.grants])
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return {tp: (begin[tp], end[tp]) for tp in tps}
    finally:
        consumer.close()


def catch_up(settings: Settings, target: dict[TopicPartition, tuple[int, int]]) -> CatchUp:
    """Progress of the worker's group towards `target` (committed offsets:
    Faust commits only acked batches, i.e. after history, books and balances)."""
    committed = _committed(settings)
    done = total = 0
    behind = []
    for tp, (begin, end) in target.items():
        meta = committed.get(tp)
        at = begin if meta is None or meta.offset < 0 else max(begin, meta.offset)
        total += end - begin
        done += min(at, end) - begin
        if at < end:
            behind.append(f"{tp.topic}[{tp.partition}]")
    return CatchUp(done, total, tuple(behind))
