"""Run the real worker (`compstream worker`) as a subprocess for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from compstream.config import Topics
from compstream.worker.processor import USAGE_AHEAD_S_LIMITS
from support.kafka import free_port

# Every worker a test started, so a failing test cannot leave one running.
STARTED: list["WorkerProcess"] = []


def kill_leftovers() -> None:
    while STARTED:
        worker = STARTED.pop()
        if worker.alive():
            try:
                os.kill(worker.proc.pid, signal.SIGCONT)  # in case a test paused it
            except ProcessLookupError:
                pass
            worker.kill()


class WorkerProcess:
    def __init__(self, data_dir: Path, bootstrap: str, topics: Topics, *, group: str,
                 lateness_s: int = 0, partitions: int = 4, dsn: str | None = None,
                 extra_env: dict[str, str] | None = None, command: tuple[str, ...] = ("worker",)):
        self.data_dir = data_dir
        self.command = command  # ("sink",): `compstream sink`, the external history loader
        self.web_port = free_port()
        self.env = dict(
            os.environ,
            COMPSTREAM_DATA_DIR=str(data_dir),
            COMPSTREAM_KAFKA_BOOTSTRAP=bootstrap,
            COMPSTREAM_TOPIC_PREFIX=topics.prefix,
            COMPSTREAM_WORKER_ID=group,
            COMPSTREAM_LATENESS_S=str(lateness_s),
            COMPSTREAM_SOURCE_PARTITIONS=str(partitions),
            COMPSTREAM_WEB_PORT=str(self.web_port),
            COMPSTREAM_CLICKHOUSE_DSN=dsn or f"chdb://{data_dir / 'clickhouse'}",
            # Tests publish usage dated weeks or months ahead of now to move
            # their partitions' watermarks past every expiry (support.checks.
            # sentinels); a deployment refuses it (processor.FUTURE, 15 min by
            # default), so test workers allow the most. The poison scenario
            # (tests/faults/test_inputs.py) runs the default and checks it.
            **{"COMPSTREAM_USAGE_AHEAD_S_MAX": str(USAGE_AHEAD_S_LIMITS[1]), **(extra_env or {})},
        )
        self.log_path = data_dir / "worker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compstream.cli.main", *self.command, "--loglevel", "INFO"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        STARTED.append(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            return "\n".join(line[:400] for line in tail)
        except FileNotFoundError:
            return "(no worker log)"

    def diagnosis(self, warnings_max: int = 30, tail_lines: int = 40) -> str:
        """The log's warnings and errors (where stalls and skipped offsets show)
        and its tail, for a failure message."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no worker log)"
        loud = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        return ("worker log, warnings and errors:\n" + "\n".join(line[:400] for line in loud[-warnings_max:])
                + "\nworker log, tail:\n" + "\n".join(line[:400] for line in lines[-tail_lines:]))

    def wait_until(self, predicate, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if not self.alive():
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) while waiting for {what}:\n{self.diagnosis()}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.diagnosis()}")
