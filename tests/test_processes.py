"""compstream.processes: the pid checks the broker and rebuild share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compstream.processes import pid_alive, pid_cmdline


def test_this_process_is_alive_and_its_arguments_are_read():
    assert pid_alive(os.getpid())
    cmdline = pid_cmdline(os.getpid())
    if cmdline is None:
        pytest.skip("no /proc here")
    assert any(b"python" in a or b"pytest" in a for a in cmdline), cmdline


def test_a_reaped_child_is_dead_and_has_no_arguments():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    assert pid_cmdline(child.pid) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are told apart through /proc")
def test_an_exited_child_not_yet_reaped_counts_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        # kill(0) still succeeds on a zombie: only its state tells.
        while pid_alive(child.pid):
            assert time.monotonic() < deadline, "the child neither ran nor became a zombie"
            time.sleep(0.05)
        os.kill(child.pid, 0)  # still there, as a zombie
    finally:
        child.wait()


def test_a_running_child_is_alive():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
