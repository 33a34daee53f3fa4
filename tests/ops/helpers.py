"""Shared helpers of the ops tests: CLI app, environment, waiting for a worker."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import typer
from typer.testing import CliRunner

from compstream.config import Topics
from compstream.domain.events import event_to_json
from compstream.readback import latest_balances
from support.checks import expected_counts  # noqa: F401  (the ops tests import it from here)

PARTITIONS = 4
LATENESS_S = 40 * 86400  # no synthetic event is late: every event stays pending


def cli() -> typer.Typer:
    """Only the commands under test (a broken sibling module cannot break these tests)."""
    from compstream.cli import ops_cmd, replay_cmd

    app = typer.Typer()
    replay_cmd.register(app)
    ops_cmd.register(app)
    return app


def env_for(bootstrap: str, topics: Topics, data_dir: Path, group: str, **extra: str) -> dict[str, str]:
    return {
        "COMPSTREAM_DATA_DIR": str(data_dir),
        "COMPSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "COMPSTREAM_TOPIC_PREFIX": topics.prefix,
        "COMPSTREAM_WORKER_ID": group,
        "COMPSTREAM_LATENESS_S": str(LATENESS_S),
        "COMPSTREAM_SOURCE_PARTITIONS": str(PARTITIONS),
        "COMPSTREAM_CLICKHOUSE_DSN": f"chdb://{data_dir / 'clickhouse'}",
        **extra,
    }


def run(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli(), args, env=env, catch_exceptions=False)


def write_jsonl(path: Path, events) -> str:
    path.write_text("".join(event_to_json(e) + "\n" for e in events))
    return str(path)


def wait_balances(bootstrap: str, topics: Topics, expected: dict[str, int], worker, timeout_s: float = 90):
    def ready():
        got = latest_balances(bootstrap, topics.balances, timeout_s=1)
        ok = all(got.get(e, {}).get("events_applied") == n for e, n in expected.items())
        return got if ok else None
    return worker.wait_until(ready, timeout_s=timeout_s, what="balances of every engineer")


def stop_pid(pid: int, timeout_s: float = 20) -> None:
    """Stop the worker `rebuild --start` spawned (under CliRunner it is our
    child: reap it, or it lingers as a zombie)."""
    from compstream.processes import pid_alive

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def doc(result) -> dict:
    return json.loads(result.stdout)


def dead_letters(env: dict[str, str], n_min: int, timeout_s: float = 60) -> list[dict]:
    """`dlq list --json` rows, polled until there are at least `n_min` (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict] = []
    while time.monotonic() < deadline:
        r = run(["dlq", "list", "--json", "--limit", "0"], env)
        assert r.exit_code == 0, r.output
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        if len(rows) >= n_min:
            return rows
        time.sleep(0.5)
    return rows


def diff_json(env: dict[str, str]) -> dict:
    """`compstream diff --json`, which must run (exit 0) whatever it finds."""
    r = run(["diff", "--json"], env)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)
