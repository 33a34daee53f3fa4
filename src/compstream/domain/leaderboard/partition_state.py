"""Partition stage: per-source-partition totals, HR timelines, candidate emission.

Usage is partitioned by engineer, so one partition owns all of an engineer's
usage. For each open window it keeps per-(engineer, team) totals and, on
request, emits one CandidateMessage holding:
- its top-k *visible* engineers per metric (opted-out engineers are filtered
  here, before the cut, so they never take a slot), and
- every team's partial totals and contributor count (including opted-out
  engineers, who still count for their team).
Windows move from `windows` to `closed` as the watermark closes them (after
their final message is produced). Late usage for a closed window is still
added to it, as the ledger applies a late event on top of its final state: the
window is marked dirty and its next message is a new final message (the merge
re-ranks and publishes a revision). A closed window is dropped once it has been
closed for `config.retention`; usage for it after that is `too_late`.
Offboarded engineers are filtered like opted-out ones, by offboarding.py's rule.

Pure: no I/O, no clock. The caller supplies events and watermarks and ships the
returned messages. Mutations re-assign `self.windows[key]`, so the dicts may be
swapped for write-through mappings (e.g. Faust tables) if the caller wishes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from compstream.domain.events import EngineerOffboarded, LeaderboardPrivacy, TeamAssigned, Usage
from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.config import LeaderboardConfig
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.messages import CandidateMessage, WatermarkMessage
from compstream.domain.leaderboard.offboarding import offboarding_hides
from compstream.domain.leaderboard.privacy import PrivacyTimeline
from compstream.domain.leaderboard.teams import TeamTimeline
from compstream.domain.leaderboard.totals import Totals
from compstream.domain.leaderboard.window_totals import NO_TEAM, PartitionWindow
from compstream.domain.leaderboard.windows import ALL_TIME_KEY, Window, window_from_key, windows_for

__all__ = ["NO_TEAM", "PartitionState", "PartitionWindow", "UsageResult"]

@dataclass(frozen=True, slots=True)
class UsageResult:
    counted: tuple[str, ...]  # open window keys the usage was added to
    too_late: tuple[str, ...]  # window keys closed for longer than the retention: not counted
    late: tuple[str, ...] = ()  # closed window keys it was added to as a late adjustment


class PartitionState:
    def __init__(self, partition: int, config: LeaderboardConfig | None = None):
        if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
            raise LeaderboardError(f"partition must be a non-negative integer, got {partition!r}")
        self.partition = partition
        self.config = config or LeaderboardConfig()
        self.windows: dict[str, PartitionWindow] = {}
        # Closed windows within retention: they still take late adjustments.
        self.closed: dict[str, PartitionWindow] = {}
        self.teams: dict[str, TeamTimeline] = {}
        self.privacy: dict[str, PrivacyTimeline] = {}
        # engineer -> earliest offboarding time (offboarding.py)
        self.offboarded: dict[str, datetime] = {}
        # (time, engineer) of offboardings the watermark has not reached: the
        # all-time board must be re-sent when it does.
        self._offboardings_ahead: list[tuple[datetime, str]] = []
        self.watermark: datetime | None = None
        # Windows changed since the last drain(); emission is the caller's
        # cadence (per event, or batched on a timer).
        self.dirty: set[str] = set()

    # -- input -----------------------------------------------------------

    def apply_usage(self, usage: Usage) -> UsageResult:
        """Add usage to every window of its event time: open ones, and closed
        ones within retention as a late adjustment."""
        team = self.team_at(usage.engineer_id, usage.occurred_at)
        totals = Totals.from_usage(usage)
        counted: list[str] = []
        late: list[str] = []
        too_late: list[str] = []
        for window in windows_for(usage.occurred_at, self.config.kinds):
            slot = self.slot_for(window)
            if slot is None:
                too_late.append(window.key)
                continue
            pw = slot.get(window.key) or PartitionWindow(window.key)
            pw.add(usage.engineer_id, team, totals)
            slot[window.key] = pw
            self.dirty.add(window.key)
            (late if slot is self.closed else counted).append(window.key)
        return UsageResult(tuple(counted), tuple(too_late), tuple(late))

    def slot_for(self, window: Window) -> dict[str, PartitionWindow] | None:
        """Where usage of `window` goes: `windows` while open, `closed` once
        closed (a late adjustment), None once closed for the retention."""
        if not window.is_closed(self.watermark, self.config.lateness):
            return self.windows
        if window.past_retention(self.watermark, self.config.lateness, self.config.retention):
            return None
        return self.closed

    def apply_hr(self, event: TeamAssigned | LeaderboardPrivacy | EngineerOffboarded) -> bool:
        """Record an HR change; True if it was new."""
        if isinstance(event, EngineerOffboarded):
            known = self.offboarded.get(event.engineer_id)
            if known is not None and known <= event.effective_at:
                return False  # re-delivery, or a later offboarding: the earliest counts
            self.restore_offboarding(event.engineer_id, event.effective_at)
            self._resend_windows_of(event.engineer_id)
            return True
        if isinstance(event, TeamAssigned):
            tl = self.teams.get(event.engineer_id) or TeamTimeline(event.engineer_id)
            changed = tl.apply(event)
            self.teams[event.engineer_id] = tl
            # Already-counted usage is not re-attributed (see teams.py).
            return changed
        if isinstance(event, LeaderboardPrivacy):
            pt = self.privacy.get(event.engineer_id) or PrivacyTimeline(event.engineer_id)
            changed = pt.apply(event)
            self.privacy[event.engineer_id] = pt
            if changed:
                self._resend_windows_of(event.engineer_id)
            return changed
        raise LeaderboardError(f"not a leaderboard HR event: {type(event).__name__}")

    def restore_offboarding(self, engineer_id: str, offboarded_at: datetime) -> None:
        """Set the engineer's offboarding time (apply_hr, or a restore from storage)."""
        if offboarded_at.tzinfo is None:
            raise LeaderboardError("offboarding time has no time zone")
        self.offboarded[engineer_id] = offboarded_at
        if self.watermark is None or offboarded_at > self.watermark:
            heapq.heappush(self._offboardings_ahead, (offboarded_at, engineer_id))

    def _resend_windows_of(self, engineer_id: str, keys: Iterable[str] | None = None) -> None:
        # Visibility is decided at emission, so every window the engineer
        # appears in must be re-sent: open ones, and closed ones within
        # retention (else a restart's re-send would apply the change at a
        # time nobody chose; the merge makes a revision only if it changes
        # the ranking input).
        for key in [*self.windows, *self.closed] if keys is None else keys:
            slot = self.windows if key in self.windows else self.closed
            pw = slot.get(key)
            if pw is not None and engineer_id in pw.contributions:
                pw.version += 1
                slot[key] = pw
                self.dirty.add(key)

    def advance_watermark(self, watermark: datetime) -> list[CandidateMessage | WatermarkMessage]:
        """Move the watermark (never backwards) and close the windows it closes.

        Returns the final CandidateMessage of each closed window followed by a
        WatermarkMessage; send them in this order (same topic partition) so the
        merge never sees the watermark before the finals. [] if no advance.
        Closed windows past retention are dropped (a pending late adjustment
        of one is sent first)."""
        if watermark.tzinfo is None:
            raise LeaderboardError("watermark has no time zone")
        if self.watermark is not None and watermark <= self.watermark:
            return []
        self.watermark = watermark
        ahead = self._offboardings_ahead
        while ahead and ahead[0][0] <= watermark:
            _, engineer = heapq.heappop(ahead)
            self._resend_windows_of(engineer, (ALL_TIME_KEY,))  # offboarding.py: all-time drops them now
        finals: list[CandidateMessage | WatermarkMessage] = []
        for key in sorted(self.windows):
            window = window_from_key(key)
            if window.is_closed(watermark, self.config.lateness):
                pw = self.windows.pop(key)
                pw.version += 1  # the final message supersedes any earlier one
                finals.append(self._message(window, pw, final=True))
                self.closed[key] = pw
                self.dirty.discard(key)
        for key in sorted(self.closed):
            window = window_from_key(key)
            if window.past_retention(watermark, self.config.lateness, self.config.retention):
                pw = self.closed.pop(key)
                if key in self.dirty:
                    finals.append(self._message(window, pw, final=True))
                    self.dirty.discard(key)
        return [*finals, WatermarkMessage(self.partition, watermark)]

    # -- output ----------------------------------------------------------

    def drain(self) -> list[CandidateMessage]:
        """Current messages for windows changed since the last drain (final
        messages for closed windows that took a late adjustment)."""
        out = [self.candidate_message(key) for key in sorted(self.dirty)
               if key in self.windows or key in self.closed]
        self.dirty.clear()
        return out

    def all_messages(self) -> list[CandidateMessage]:
        """Current messages for every open and retained closed window, e.g.
        after a restart (the dirty set may predate the crash). Safe to resend:
        the merge ignores versions it already has, and a closed window's
        final that changes nothing is no revision."""
        self.dirty.clear()
        return [self.candidate_message(key) for key in sorted([*self.windows, *self.closed])]

    def candidate_message(self, window_key: str) -> CandidateMessage:
        pw = self.windows.get(window_key)
        if pw is not None:
            return self._message(window_from_key(window_key), pw, final=False)
        pw = self.closed.get(window_key)
        if pw is not None:
            return self._message(window_from_key(window_key), pw, final=True)
        raise LeaderboardError(f"partition {self.partition} has no window {window_key!r}")

    def _message(self, window: Window, pw: PartitionWindow, final: bool) -> CandidateMessage:
        eligible, engineers = pw.top_engineers(self.config.k, self._hidden_in(window, pw))
        return CandidateMessage(
            partition=self.partition,
            window_key=window.key,
            version=pw.version,
            final=final,
            k=self.config.k,
            eligible=eligible,
            engineers=engineers,
            teams=pw.team_partials(),
            watermark=self.watermark,
        )

    def _hidden_in(self, window: Window, pw: PartitionWindow) -> set[str]:
        # Walk whichever is smaller: opted-out-ever engineers are usually few.
        if len(self.privacy) <= len(pw.contributions):
            hidden = {e for e, pt in self.privacy.items() if pt.hidden_during(window)}
        else:
            hidden = {e for e in pw.contributions if self.hidden(e, window)}
        wm = self.watermark
        if len(self.offboarded) <= len(pw.contributions):
            hidden.update(e for e, at in self.offboarded.items() if offboarding_hides(at, window, wm))
        else:
            hidden.update(e for e in pw.contributions if offboarding_hides(self.offboarded.get(e), window, wm))
        return hidden

    # -- lookups ---------------------------------------------------------

    def team_at(self, engineer_id: str, ts: datetime) -> str:
        tl = self.teams.get(engineer_id)
        team = tl.team_at(ts) if tl is not None else None
        return team or NO_TEAM

    def hidden(self, engineer_id: str, window: Window) -> bool:
        """Opted out during the window (privacy.py); offboarding is checked at emission."""
        pt = self.privacy.get(engineer_id)
        return pt is not None and pt.hidden_during(window)

    # -- serialization ---------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "watermark": c.time_out(self.watermark),
            "windows": [self.windows[k].to_dict() for k in sorted(self.windows)],
            "closed": [self.closed[k].to_dict() for k in sorted(self.closed)],
            "teams": [self.teams[e].to_dict() for e in sorted(self.teams)],
            "privacy": [self.privacy[e].to_dict() for e in sorted(self.privacy)],
            "offboarded": [{"engineer_id": e, "offboarded_at": c.time_out(self.offboarded[e])}
                           for e in sorted(self.offboarded)],
            "dirty": sorted(self.dirty),
        }

    @classmethod
    def from_dict(cls, raw: object, config: LeaderboardConfig | None = None) -> "PartitionState":
        """Config is not serialized: it comes from settings at start-up."""
        raw = c.obj(raw, "partition state")
        out = cls(c.req_int(raw, "partition"), config)
        out.watermark = c.opt_time(raw, "watermark")
        for item in c.req_list(raw, "windows"):
            pw = PartitionWindow.from_dict(item)
            out.windows[pw.window_key] = pw
        for item in c.req_list(raw, "closed") if "closed" in raw else ():  # absent in older states
            pw = PartitionWindow.from_dict(item)
            out.closed[pw.window_key] = pw
        for item in c.req_list(raw, "teams"):
            tl = TeamTimeline.from_dict(item)
            out.teams[tl.engineer_id] = tl
        for item in c.req_list(raw, "privacy"):
            pt = PrivacyTimeline.from_dict(item)
            out.privacy[pt.engineer_id] = pt
        for item in c.req_list(raw, "offboarded") if "offboarded" in raw else ():  # absent in older states
            item = c.obj(item, "offboarding")
            out.restore_offboarding(c.req_str(item, "engineer_id"), c.req_time(item, "offboarded_at"))
        dirty = c.req_list(raw, "dirty")
        if not all(isinstance(k, str) for k in dirty):
            raise LeaderboardError(f"dirty: expected window keys, got {dirty!r}")
        out.dirty = set(dirty)
        return out
