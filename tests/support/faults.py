"""Helpers for the fault-injection scenarios (tests/faults)."""

from __future__ import annotations

import os

from compstream.domain.events import LEDGER_EVENT_TYPES
from support.checks import LONG_LATENESS_S
from support.worker import WorkerProcess

SESSION_TIMEOUT_S = 6  # the broker's minimum: a killed worker's partitions move fast
SOAK = os.environ.get("COMPSTREAM_SOAK") == "1"


def ledger_only(events) -> list:
    return [e for e in events if e.type in LEDGER_EVENT_TYPES]


def worker_for(tmp_path, bootstrap, topics, name: str, partitions: int, data_dir=None, **env) -> WorkerProcess:
    """A worker of the scenario's group; the same `name` means the same data dir
    (state + embedded history), as a restarted process on one host would have."""
    return WorkerProcess(
        data_dir or tmp_path / name, bootstrap, topics, group=f"g-{topics.prefix}",
        lateness_s=LONG_LATENESS_S, partitions=partitions,
        extra_env={"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S), **env},
    )
