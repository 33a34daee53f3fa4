"""`compstream demo` end to end, as `make demo` runs it (its own broker on a
free port, the default engine): balances equal the replay, October becomes
final by the idleness rule, and the October org report equals the offline
replay for every engineer and field."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from support.kafka import free_port

pytestmark = pytest.mark.kafka


def _free_pair() -> int:
    """A port whose next one is free too: the demo's broker takes port and
    port + 1 (its controller)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


def test_the_demo_closes_october_and_its_report_equals_the_replay(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPSTREAM_")}
    env.update(COMPSTREAM_DATA_DIR=str(tmp_path / "demo"), COMPSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{_free_pair()}",
               COMPSTREAM_WEB_PORT=str(free_port()), COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "compstream.cli.main", "demo"], env=env, capture_output=True,
                          text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "streamed balances equal an offline replay" in out, out[-3000:]
    assert "2026-10 is final" in out, out[-3000:]
    assert "org report equals the offline replay for all 7 engineers" in out, out[-3000:]
    assert "grant events for 2026-10 from examples/policy.toml" in out, out[-3000:]
