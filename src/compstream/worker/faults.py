"""Fault injection for the reliability tests, driven by environment variables.

Inert unless set. They sit exactly at the seams that matter for exactly-once:
- COMPSTREAM_FAULT_CRASH_AFTER_HISTORY=N  exit hard (os._exit) right after the
  Nth successful history write, before tables, outputs and offset commit;
- COMPSTREAM_FAULT_HISTORY_DOWN_FILE=PATH every history write fails while PATH
  exists (an embedded-engine stand-in for a ClickHouse outage).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
CRASH_EXIT_CODE = 99


class InjectedOutage(ConnectionError):
    """The history store is 'down' (fault injection)."""


class Faults:
    def __init__(self, environ=os.environ):
        raw = environ.get("COMPSTREAM_FAULT_CRASH_AFTER_HISTORY", "")
        self.crash_after_history = int(raw) if raw else None
        down = environ.get("COMPSTREAM_FAULT_HISTORY_DOWN_FILE", "")
        self.history_down_file = Path(down) if down else None
        self.history_writes = 0

    def before_history_write(self) -> None:
        if self.history_down_file is not None and self.history_down_file.exists():
            raise InjectedOutage(f"history unavailable ({self.history_down_file} exists)")

    def after_history_write(self) -> None:
        self.history_writes += 1
        if self.crash_after_history is not None and self.history_writes >= self.crash_after_history:
            log.error("fault injection: crashing after history write %d", self.history_writes)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
