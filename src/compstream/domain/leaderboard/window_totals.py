"""One partition's totals for one window, with derived ranking caches.

`contributions` (engineer -> team -> Totals) is the state: it alone is
serialized. Beside it the window keeps caches that a candidate message needs,
updated on every add, so a message costs a linear scan over plain ints plus a
k-sized heap instead of re-summing every engineer's Totals and sorting them all
(the partition stage re-sends every dirty window each batch):
- per-engineer tokens and spend (the two ranking values),
- per-team summed fields and member count (engineer-team pairs with activity).

All writes go through `add`/`put_engineer`; `contributions` is a read-only view
so nothing can change the state behind the caches. The caches are rebuilt from
the contributions on construction (and so by `from_dict`).
"""

from __future__ import annotations

import heapq
from types import MappingProxyType
from typing import Collection, Mapping

from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.messages import EngineerEntry, TeamPartial
from compstream.domain.leaderboard.totals import METRICS, Metric, Totals, sum_totals
from compstream.domain.leaderboard.windows import window_from_key

NO_TEAM = ""  # usage before any TeamAssigned: ranked for the engineer, no team


def _accumulate(acc: list[int], t: Totals) -> None:
    # Field order of Totals; a mutable list avoids a frozen-dataclass allocation per add.
    acc[0] += t.input_tokens
    acc[1] += t.output_tokens
    acc[2] += t.cache_read_tokens
    acc[3] += t.cache_write_tokens
    acc[4] += t.cost_nanos
    acc[5] += t.unpriced_events
    acc[6] += t.events


class PartitionWindow:
    __slots__ = ("window_key", "version", "_contributions", "_tokens", "_spend", "_team_sums", "_members")

    def __init__(self, window_key: str, version: int = 0,
                 contributions: Mapping[str, Mapping[str, Totals]] | None = None):
        self.window_key = window_key
        # Bumped on every change that alters this window's candidate message.
        self.version = version
        # Split by team because an engineer who changes team mid-window
        # contributes to both.
        self._contributions: dict[str, dict[str, Totals]] = {}
        self._tokens: dict[str, int] = {}
        self._spend: dict[str, int] = {}
        self._team_sums: dict[str, list[int]] = {}
        self._members: dict[str, int] = {}
        for engineer, by_team in (contributions or {}).items():
            self.put_engineer(engineer, by_team)

    # -- state -------------------------------------------------------------

    @property
    def contributions(self) -> Mapping[str, Mapping[str, Totals]]:
        return MappingProxyType(self._contributions)

    def by_team(self, engineer_id: str) -> Mapping[str, Totals] | None:
        by_team = self._contributions.get(engineer_id)
        return None if by_team is None else MappingProxyType(by_team)

    def add(self, engineer_id: str, team_id: str, totals: Totals) -> None:
        by_team = self._contributions.get(engineer_id)
        if by_team is None:
            by_team = self._contributions[engineer_id] = {}
        old = by_team.get(team_id)
        new = totals if old is None else old + totals  # Totals is immutable: sharing is safe
        by_team[team_id] = new
        self._tokens[engineer_id] = self._tokens.get(engineer_id, 0) + totals.input_tokens + totals.output_tokens
        self._spend[engineer_id] = self._spend.get(engineer_id, 0) + totals.cost_nanos
        if team_id != NO_TEAM:
            acc = self._team_sums.get(team_id)
            if acc is None:
                acc = self._team_sums[team_id] = [0] * 7
                self._members[team_id] = 0
            _accumulate(acc, totals)
            # A correction can take a pair's activity away again, so compare.
            was = old is not None and old.is_activity()
            self._members[team_id] += new.is_activity() - was
        self.version += 1

    def put_engineer(self, engineer_id: str, by_team: Mapping[str, Totals]) -> None:
        """Set one engineer's totals (restore from a record); the version is untouched."""
        replacing = engineer_id in self._contributions
        self._contributions[engineer_id] = dict(by_team)
        if replacing:  # rare (restore writes each engineer once): recompute
            self._rebuild()
        else:
            self._index(engineer_id, self._contributions[engineer_id])

    def _index(self, engineer_id: str, by_team: Mapping[str, Totals]) -> None:
        tokens = spend = 0
        for team, t in by_team.items():
            tokens += t.input_tokens + t.output_tokens
            spend += t.cost_nanos
            if team != NO_TEAM:
                acc = self._team_sums.get(team)
                if acc is None:
                    acc = self._team_sums[team] = [0] * 7
                    self._members[team] = 0
                _accumulate(acc, t)
                self._members[team] += t.is_activity()
        self._tokens[engineer_id] = tokens
        self._spend[engineer_id] = spend

    def _rebuild(self) -> None:
        for cache in (self._tokens, self._spend, self._team_sums, self._members):
            cache.clear()
        for engineer, by_team in self._contributions.items():
            self._index(engineer, by_team)

    # -- message parts -----------------------------------------------------

    def engineer_totals(self) -> dict[str, Totals]:
        return {e: sum_totals(by_team.values()) for e, by_team in self._contributions.items()}

    def top_engineers(self, k: int, hidden: Collection[str]) -> tuple[dict[Metric, int], tuple[EngineerEntry, ...]]:
        """(visible engineers with a non-zero value per metric, the union of
        each metric's top k visible engineers by id). Rank order is value
        descending then id ascending, as boards.top_n."""
        values = {Metric.TOKENS: self._tokens, Metric.SPEND: self._spend}
        eligible: dict[Metric, int] = {}
        chosen: set[str] = set()
        for metric in METRICS:
            ranked = [(-v, e) for e, v in values[metric].items() if v > 0 and e not in hidden]
            eligible[metric] = len(ranked)
            chosen.update(e for _, e in heapq.nsmallest(k, ranked))
        entries = tuple(EngineerEntry(e, sum_totals(self._contributions[e].values())) for e in sorted(chosen))
        return eligible, entries

    def team_partials(self) -> tuple[TeamPartial, ...]:
        # Zero-activity usage (all-zero events) does not make a member: it
        # would pad the small-team count without diluting anything.
        return tuple(TeamPartial(t, Totals(*self._team_sums[t]), self._members[t]) for t in sorted(self._team_sums))

    # -- serialization (the caches are never written) ----------------------

    def to_dict(self) -> dict:
        return {
            "window_key": self.window_key,
            "version": self.version,
            "contributions": {
                e: {t: tot.to_dict() for t, tot in sorted(by_team.items())}
                for e, by_team in sorted(self._contributions.items())
            },
        }

    @classmethod
    def from_dict(cls, raw: object) -> "PartitionWindow":
        raw = c.obj(raw, "partition window")
        contributions: dict[str, dict[str, Totals]] = {}
        for e, by_team in c.obj(raw.get("contributions"), "contributions").items():
            contributions[e] = {t: Totals.from_dict(tot) for t, tot in c.obj(by_team, "by team").items()}
        window_key = c.req_str(raw, "window_key")
        window_from_key(window_key)  # validate
        return cls(window_key, c.req_int(raw, "version"), contributions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartitionWindow):
            return NotImplemented
        return (self.window_key, self.version, self._contributions) == (
            other.window_key, other.version, other._contributions)

    __hash__ = None  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        return (f"PartitionWindow(window_key={self.window_key!r}, version={self.version!r}, "
                f"contributions={self._contributions!r})")
