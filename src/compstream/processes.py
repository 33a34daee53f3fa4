"""Whether a pid from a pid file is a live process, and what it runs: one home
for the broker's and the worker's pid-file checks."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """A process exists with this pid and has not exited. A zombie (exited,
    not yet reaped by its parent) still answers kill(0): it counts as dead.
    A pid of another user's process counts as alive (kill says so much)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)


def pid_cmdline(pid: int) -> list[bytes] | None:
    """The process's arguments, or None where /proc cannot say (no /proc,
    or the process is gone). Briefly `[b""]` around an exec."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
