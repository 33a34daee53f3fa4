"""One partition's totals for one window, with derived ranking caches.

`contributions` (engineer -> team -> Totals) is the state: it alone is
serialized. Beside it the window keeps caches that a candidate message needs,
updated on every add, so a message costs a linear scan over plain ints plus a
k-sized heap instead of re-summing every engineer's Totals and sorting them all
(the partition stage re-sends every dirty window each batch):
- per-engineer tokens and spend (the two ranking values),
- per-team summed fields and member count (engineer-team pairs with activity),
- the last ranking (eligible counts and each metric's top k) and the engineers
  whose values changed since, with their values then. While no engineer of
  the last top k went down, the new top k is among the last top k and the
  changed engineers (the others kept their values and still rank behind k
  engineers that did not fall), so a message re-ranks those instead of
  scanning every engineer; a negative correction elsewhere does not force a
  scan. Anything else (a fall in the top k, a restore, another k or hidden
  set) rescans that metric.

All writes go through `add`/`put_engineer`; `contributions` is a read-only view
so nothing can change the state behind the caches. The caches are rebuilt from
the contributions on construction (and so by `from_dict`).
"""

from __future__ import annotations

import heapq
from types import MappingProxyType
from typing import Any, Collection, Mapping

from compstream.domain.leaderboard import _codec as c
from compstream.domain.leaderboard.messages import EngineerEntry, TeamPartial
from compstream.domain.leaderboard.totals import METRICS, Metric, Totals, sum_totals
from compstream.domain.leaderboard.windows import window_from_key

NO_TEAM = ""  # usage before any TeamAssigned: ranked for the engineer, no team
# The per-engineer cache holds [tokens, spend] by METRICS position.
if METRICS != (Metric.TOKENS, Metric.SPEND):  # pragma: no cover - guards a future metric
    raise ImportError("window_totals caches only tokens and spend; update it with METRICS")


def _accumulate(acc: list[int], t: Totals) -> None:
    # Field order of Totals; a mutable list avoids a frozen-dataclass allocation per add.
    acc[0] += t.input_tokens
    acc[1] += t.output_tokens
    acc[2] += t.cache_read_tokens
    acc[3] += t.cache_write_tokens
    acc[4] += t.cost_nanos
    acc[5] += t.unpriced_events
    acc[6] += t.events


def _active(t: Totals) -> bool:
    # Totals.is_activity without the method and property calls (hot path).
    return bool((t.input_tokens + t.output_tokens) or (t.cache_read_tokens + t.cache_write_tokens)
                or t.cost_nanos)


class PartitionWindow:
    __slots__ = ("window_key", "version", "_contributions", "_values", "_teams", "_ranked", "_changed")

    def __init__(self, window_key: str, version: int = 0,
                 contributions: Mapping[str, Mapping[str, Totals]] | None = None):
        self.window_key = window_key
        # Bumped on every change that alters this window's candidate message.
        self.version = version
        # Split by team because an engineer who changes team mid-window
        # contributes to both.
        self._contributions: dict[str, dict[str, Totals]] = {}
        # engineer -> [tokens, spend] (the ranking values, METRICS order)
        self._values: dict[str, list[int]] = {}
        # team -> [the seven Totals fields in order..., members]
        self._teams: dict[str, list[int]] = {}
        # (k, hidden, eligible per metric, top k (-value, engineer) per metric) of the last ranking
        self._ranked: tuple[Any, ...] | None = None
        # engineer -> its (tokens, spend) at the last ranking; None: rescan
        self._changed: dict[str, tuple[int, int]] | None = None
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
        # A correction can take a pair's activity away again, so compare.
        self._count(engineer_id, team_id, totals, _active(new) - (old is not None and _active(old)))
        self.version += 1

    def put_engineer(self, engineer_id: str, by_team: Mapping[str, Totals]) -> None:
        """Set one engineer's totals (restore from a record); the version is untouched."""
        replacing = engineer_id in self._contributions
        self._contributions[engineer_id] = dict(by_team)
        if replacing:  # rare (restore writes each engineer once): recompute
            self._rebuild()
        else:
            self._index(engineer_id, self._contributions[engineer_id])
        self._changed = None

    def _index(self, engineer_id: str, by_team: Mapping[str, Totals]) -> None:
        self._values[engineer_id] = [0, 0]
        for team, t in by_team.items():
            self._count(engineer_id, team, t, _active(t))

    def _count(self, engineer_id: str, team_id: str, totals: Totals, members_delta: int) -> None:
        """Add `totals` to the engineer's metric values and, with a team, to
        that team's sums; `members_delta` moves the team's active-member count."""
        values = self._values.get(engineer_id)
        if values is None:
            values = self._values[engineer_id] = [0, 0]
        changed = self._changed
        if changed is not None and engineer_id not in changed:
            changed[engineer_id] = (values[0], values[1])
        # domain/tokens.py's definition, inlined on this hot path (a test pins them equal).
        tokens, spend = totals.input_tokens + totals.output_tokens, totals.cost_nanos
        values[0] += tokens
        values[1] += spend
        if team_id != NO_TEAM:
            acc = self._teams.get(team_id)
            if acc is None:
                acc = self._teams[team_id] = [0] * 8
            _accumulate(acc, totals)
            acc[7] += members_delta

    def _rebuild(self) -> None:
        self._values.clear()
        self._teams.clear()
        for engineer, by_team in self._contributions.items():
            self._index(engineer, by_team)
        self._changed = None

    # -- message parts -----------------------------------------------------

    def engineer_totals(self) -> dict[str, Totals]:
        return {e: sum_totals(by_team.values()) for e, by_team in self._contributions.items()}

    def top_engineers(self, k: int, hidden: Collection[str]) -> tuple[dict[Metric, int], tuple[EngineerEntry, ...]]:
        """(visible engineers with a non-zero value per metric, the union of
        each metric's top k visible engineers by id). Rank order is value
        descending then id ascending, as boards.top_n."""
        hidden = frozenset(hidden)
        last, changed, values = self._ranked, self._changed, self._values
        since_last = last is not None and changed is not None and last[0] == k and last[1] == hidden
        counts, tops = [], []
        for i in range(len(METRICS)):
            ranked = None
            # Re-rank the last top k and the changed (module docstring); `last`
            # and `changed` are re-tested only to narrow their types.
            if since_last and last is not None and changed is not None:
                count = last[2][i]
                top_ids = {e for _, e in last[3][i]}
                candidates = set(top_ids)
                for e, old in changed.items():
                    value = values[e][i]
                    if value < old[i] and e in top_ids:
                        break  # one of the top k fell: someone unchanged may pass it
                    if e in hidden:
                        continue
                    if value > 0:
                        count += old[i] <= 0  # newly eligible
                        candidates.add(e)
                    elif old[i] > 0:
                        count -= 1  # no longer eligible
                else:
                    ranked = [(-values[e][i], e) for e in candidates]
            if ranked is None:
                ranked = [(-v[i], e) for e, v in values.items() if v[i] > 0 and e not in hidden]
                count = len(ranked)
            counts.append(count)
            tops.append(heapq.nsmallest(k, ranked))
        self._ranked, self._changed = (k, hidden, counts, tops), {}
        eligible = dict(zip(METRICS, counts, strict=False))
        chosen = {e for top in tops for _, e in top}
        entries = tuple(EngineerEntry(e, sum_totals(self._contributions[e].values())) for e in sorted(chosen))
        return eligible, entries

    def team_partials(self) -> tuple[TeamPartial, ...]:
        # Zero-activity usage (all-zero events) does not make a member: it
        # would pad the small-team count without diluting anything.
        return tuple(TeamPartial(t, Totals(*acc[:7]), acc[7]) for t, acc in sorted(self._teams.items()))

    # -- serialization (the caches are never written) ----------------------

    def to_dict(self) -> dict[str, Any]:
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

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        return (f"PartitionWindow(window_key={self.window_key!r}, version={self.version!r}, "
                f"contributions={self._contributions!r})")
