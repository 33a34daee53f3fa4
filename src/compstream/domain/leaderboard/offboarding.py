"""Offboarding ends ranking.

Rule, for an engineer offboarded at T (`EngineerOffboarded.effective_at`):

* a dated window (day, week, month) that starts at or after T does not rank
  the engineer: it lies wholly after the offboarding;
* the window that contains T, and every earlier one, still does: that usage
  was theirs while employed, and removing it would rewrite history;
* the all-time board (the standing board) drops the engineer once the stream
  time (the partition's watermark) reaches T. A scheduled offboarding, dated
  ahead, therefore does not remove anyone early, and the result does not
  depend on when the event was delivered.

Team totals keep the usage (the team spent it), as with opt-outs. Final
snapshots are not retracted: an offboarding that arrives after a window it
would hide was closed is late like any other input. There is no onboarding
event; the earliest offboarding of an engineer counts, re-deliveries and later
ones change nothing.
"""

from __future__ import annotations

from datetime import datetime

from compstream.domain.leaderboard.windows import Window


def offboarding_hides(offboarded_at: datetime | None, window: Window, watermark: datetime | None) -> bool:
    """True if an engineer offboarded at `offboarded_at` must not be ranked on `window`."""
    if offboarded_at is None:
        return False
    if window.start is None:  # all-time
        return watermark is not None and watermark >= offboarded_at
    return window.start >= offboarded_at
