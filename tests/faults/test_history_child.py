"""The embedded history loader runs in a child process of the worker
(engines/history_side.py, worker/history_child.py). It dies alone (kill -9,
OOM): the worker restarts it and history is still exact. The worker dies
alone: the orphaned loader stops by itself, so the restarted worker's loader
can open the embedded store (chdb opens a data dir in one process at a time)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bench.common import child_pids
from compstream.publish import publish_events
from compstream.synth import generate
from compstream.worker.history_child import NICE
from support.checks import balance_mismatches, expected_counts, wait_balances
from support.faults import finalize_and_stop, ledger_only, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def _loader_pid(worker) -> int:
    """The worker's history loader process (waits for it to be spawned)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in child_pids(worker.proc.pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"compstream.worker.history_child" in cmdline:
                return child
        time.sleep(0.2)
    raise AssertionError(f"no history loader process under the worker\n{worker.log_tail()}")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _finish(worker, bootstrap, topics, events) -> None:
    balances = wait_balances(bootstrap, topics.balances, expected_counts(events), 120, worker)
    assert balance_mismatches(balances, events) == []
    finalize_and_stop(worker, bootstrap, topics, events, PARTITIONS)


def _worker_midway(tmp_path, bootstrap, topics, name: str, seed: int):
    """A worker with part of its events applied: (worker, all events, the
    rest not yet published, its loader's pid)."""
    events = ledger_only(generate(engineers=30, usage_events=1_500, seed=seed))
    first, rest = events[:700], events[700:]
    worker = worker_for(tmp_path, bootstrap, topics, name, PARTITIONS).start()
    publish_events(first, bootstrap, topics)
    wait_balances(bootstrap, topics.balances, expected_counts(first), 120, worker)
    return worker, events, rest, _loader_pid(worker)


def test_a_killed_loader_process_is_restarted_and_history_stays_exact(kafka_bootstrap, topics, tmp_path):
    worker, events, rest, loader = _worker_midway(tmp_path, kafka_bootstrap, topics, "loader-killed", 96)
    # Below the worker, so balances come first where the two compete for a core.
    worker_nice = os.getpriority(os.PRIO_PROCESS, worker.proc.pid)
    assert os.getpriority(os.PRIO_PROCESS, loader) == min(19, worker_nice + NICE)
    os.kill(loader, signal.SIGKILL)
    publish_events(rest, kafka_bootstrap, topics)
    worker.wait_until(lambda: "the history loader process exited" in worker.log_path.read_text(), 30,
                      "the worker to notice its loader died")
    assert worker.alive(), worker.log_tail()
    assert _loader_pid(worker) != loader  # a new one
    _finish(worker, kafka_bootstrap, topics, events)


def test_an_orphaned_loader_stops_and_the_restarted_worker_loads_everything(kafka_bootstrap, topics, tmp_path):
    worker, events, rest, loader = _worker_midway(tmp_path, kafka_bootstrap, topics, "worker-killed", 97)
    os.kill(worker.proc.pid, signal.SIGKILL)  # the worker only, not its process group
    worker.proc.wait(timeout=10)
    worker.start()  # at once: its loader may have to wait for the orphan to release the store
    publish_events(rest, kafka_bootstrap, topics)
    worker.wait_until(lambda: not _running(loader), 30, "the orphaned loader to stop by itself")
    assert "the worker is gone (stdin closed)" in worker.log_path.read_text()
    _finish(worker, kafka_bootstrap, topics, events)
