"""The idleness rule: a quiet task's stream time follows the wall clock.

Stream time moves with usage only, so a partition whose engineers stop using
compute (a quiet month end) would never become final. With the rule on
(`idle_advance_s` > 0), a task whose inputs are read to their end and have
been quiet that long moves its stream time to `wall_clock()`, then again
every `idle_advance_s` while quiet. Off (0) for historical replays, where
the wall clock says nothing about the events' time. The engine supplies both
clocks; the domain never reads one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterable

from compstream.worker.core.sync import TaskInputs


class IdleRule:
    def __init__(self, idle_advance_s: float, clock: Callable[[], float],
                 wall_clock: Callable[[], datetime] | None):
        if idle_advance_s < 0:
            raise ValueError("idle_advance_s must be >= 0")
        if idle_advance_s > 0 and wall_clock is None:
            raise ValueError("the idleness rule needs a wall clock")
        self.idle_advance_s = idle_advance_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.last_activity: dict[int, float] = {}  # partition -> clock() of its last message or advance

    def touch(self, partition: int) -> None:
        self.last_activity[partition] = self.clock()

    def due(self, owned: Iterable[int], inputs: TaskInputs) -> dict[int, datetime]:
        """partition -> the wall-clock time its stream time moves to now."""
        if not self.idle_advance_s or self.wall_clock is None:
            return {}
        now = self.clock()
        out = {}
        for p in sorted(owned):
            since = self.last_activity.setdefault(p, now)
            if now - since >= self.idle_advance_s and inputs.at_rest(p):
                out[p] = self.wall_clock()
                self.last_activity[p] = now
        return out
