"""Leaderboard privacy: effective-dated opt-out, pseudonyms, small-team hiding.

Opt-out rule (decided here, used by the partition stage): an engineer appears on
a window's engineer board only if opted in for the *whole* window. A board value
sums usage over the window, so publishing it while any part of the window was
opted out would reveal opted-out usage. Consequences: an opt-out effective
mid-week hides the engineer from that week's and month's boards, and anyone who
was ever opted out never reappears on the all-time board. Windows already closed
(final snapshots) are not retracted. Opted-out usage still counts in team totals.

Pseudonyms: HMAC-SHA256(secret, engineer_id), hex, truncated. Stable for a given
secret, unlinkable without it. Applied only when publishing: ranking and tie
breaks always use the real id, so pseudonyms never change the order.

Small teams: a team appears on a team board only when at least `min_team_size`
distinct engineers contributed usage to it *in that window* (counting opted-out
members). We chose contributors over HR headcount because headcount protects
nothing when one member of a large team does all the usage: the team total
would then be that person's total. Counting contributors guarantees every
published team figure aggregates at least `min_team_size` people's usage.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from compstream.domain.events import LeaderboardPrivacy
from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard._timeline import Timeline
from compstream.domain.leaderboard.errors import LeaderboardError
from compstream.domain.leaderboard.windows import Window

DEFAULT_MIN_TEAM_SIZE = 5
# 12 hex chars = 48 bits: for 100k engineers the chance of any two sharing a
# pseudonym is ~2e-5, where the 8 chars of `anon-3f9a1c2b` would give ~70%.
DEFAULT_PSEUDONYM_HEX_CHARS = 12
PSEUDONYM_PREFIX = "anon-"


@dataclass
class PrivacyTimeline:
    engineer_id: str
    _timeline: Timeline[bool] = field(default_factory=Timeline)

    def apply(self, event: LeaderboardPrivacy) -> bool:
        """Record a change; False if already known (re-delivery)."""
        if event.engineer_id != self.engineer_id:
            raise LeaderboardError(
                f"LeaderboardPrivacy for {event.engineer_id!r} applied to {self.engineer_id!r}"
            )
        return self._timeline.add(event.effective_at, event.event_id, event.opted_out)

    def opted_out_at(self, ts: datetime) -> bool:
        return self._timeline.at(ts, False)

    def hidden_during(self, window: Window) -> bool:
        """True if opted out at any instant of the window (see module docstring)."""
        if window.start is None:
            return any(v for (_, _, v) in self._timeline.entries)
        if self.opted_out_at(window.start):
            return True
        return any(self._timeline.changes_within(window.start, window.end))

    def to_dict(self) -> dict[str, Any]:
        return {
            "engineer_id": self.engineer_id,
            "changes": [
                {"effective_at": c.time_out(t), "event_id": eid, "opted_out": v}
                for (t, eid, v) in self._timeline.entries
            ],
        }

    @classmethod
    def from_dict(cls, raw: object) -> "PrivacyTimeline":
        raw = c.obj(raw, "privacy timeline")
        out = cls(c.req_str(raw, "engineer_id"))
        for item in c.req_list(raw, "changes"):
            item = c.obj(item, "privacy change")
            out._timeline.add(c.req_time(item, "effective_at"), c.req_str(item, "event_id"),
                              c.req_bool(item, "opted_out"))
        return out


class Pseudonymizer:
    """engineer_id -> `anon-<hex>`; keyed so ids cannot be brute-forced back."""

    def __init__(self, secret: bytes | str, hex_chars: int = DEFAULT_PSEUDONYM_HEX_CHARS):
        key = secret.encode() if isinstance(secret, str) else secret
        if not isinstance(key, bytes) or len(key) < 16:
            # A short key makes the pseudonyms guessable from the id list.
            raise LeaderboardError("pseudonym secret must be at least 16 bytes")
        if isinstance(hex_chars, bool) or not isinstance(hex_chars, int) or not 8 <= hex_chars <= 64:
            raise LeaderboardError(f"hex_chars must be an integer in 8..64, got {hex_chars!r}")
        self._key = key
        self._hex_chars = hex_chars

    def __call__(self, engineer_id: str) -> str:
        digest = hmac.new(self._key, engineer_id.encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[: self._hex_chars]

    def __repr__(self) -> str:  # never print the key
        return f"Pseudonymizer(hex_chars={self._hex_chars})"


def team_visible(members: int, min_team_size: int = DEFAULT_MIN_TEAM_SIZE) -> bool:
    return members >= min_team_size
