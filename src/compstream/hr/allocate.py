"""Derive a period's grant events from policy + roster + what was issued before.

Pure and deterministic: the same inputs give the same events with the same
ids, and the output only depends on the history through the grants it names
(labels.py). The rules, in short (docs/hr.md has the long form):

* An entitlement *line* is (engineer, period, rule) — or a bonus, or a
  rule's rollover. Its wanted amount is the sum over *segments*: stretches of
  the period with one roster row and one policy version in force. A segment
  is worth `rate * days // period_days` (floor, integer nanos), so a whole
  period is exactly the rate and pieces never add up to more than it.
* Nothing issued yet: one grant of the wanted amount, effective the line's
  first day. Wanted equals issued (live grants): nothing.
* More wanted than issued: a delta grant (`adjust`) of the difference.
* Less wanted: the line's live grants are revoked, and a replacement
  (`adjust`) of what is wanted from that day on is issued. A revocation only
  takes what is left of a grant, so the engineer keeps what they used before.
  After a revocation at day R, the line compares the live grants with what
  is wanted from R on.
* Adjustments take effect at the line's latest change in the period (a
  segment start or end), never before the latest revocation or, for a
  decrease, before the grants they revoke.
* Rollover: once per period and rule, min(cap, what the previous period's
  grants of that rule had left when they expired at its end), from an
  offline replay (`rollover_unused`). Never adjusted afterwards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable

from compstream.domain import grant_labels as labels
from compstream.domain.events import Event, GrantIssued, GrantRevoked
from compstream.hr.periods import Period, day_start, of_kind, previous
from compstream.hr.policy import Bonus, Expiry, Policies, PolicyError, Rule
from compstream.hr.roster import RosterRow, by_engineer, employment_end


# --------------------------------------------------------------------- state
@dataclass(frozen=True, slots=True)
class Lot:
    grant_id: str
    amount_nanos: int
    effective_at: datetime
    expires_at: datetime | None
    kind: str
    revoked_at: datetime | None = None


LineKey = tuple[str, str, str]  # (engineer, period label, line)


@dataclass
class HistoryState:
    """What a policy issued before: its grants per line, and every event id seen."""

    policy: str
    lots: dict[LineKey, list[Lot]] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    versions: dict[str, set[int]] = field(default_factory=dict)  # period label -> versions seen

    @classmethod
    def from_events(cls, policy: str, events: Iterable[Event]) -> "HistoryState":
        state = cls(policy)
        issued: dict[tuple[str, str], tuple[LineKey, Lot]] = {}
        revoked: dict[tuple[str, str], datetime] = {}
        for e in events:
            state.event_ids.add(e.event_id)
            if type(e) is GrantIssued:
                ref = labels.parse_grant_id(e.grant_id)
                if ref is None or ref.policy != policy:
                    continue
                key = (e.engineer_id, ref.period, ref.line)
                issued.setdefault((e.engineer_id, e.grant_id), (key, Lot(
                    e.grant_id, e.amount_nanos, e.effective_at, e.expires_at, e.kind)))
                kind = labels.parse_kind(e.kind)
                if kind is not None:
                    state.versions.setdefault(ref.period, set()).add(kind.version)
            elif type(e) is GrantRevoked:
                at = revoked.get((e.engineer_id, e.grant_id))
                revoked[(e.engineer_id, e.grant_id)] = e.effective_at if at is None else min(at, e.effective_at)
        for ident, (key, lot) in sorted(issued.items()):
            at = revoked.get(ident)
            if at is not None:
                lot = Lot(lot.grant_id, lot.amount_nanos, lot.effective_at, lot.expires_at, lot.kind, at)
            state.lots.setdefault(key, []).append(lot)
        return state


# ---------------------------------------------------------------- entitlement
@dataclass(frozen=True, slots=True)
class Segment:
    start: date
    end: date  # exclusive
    version: int
    rate_nanos: int
    who: str  # "level L3, team platform" (for --explain)


def prorate(rate_nanos: int, days: int, period_days: int) -> int:
    """Floor of rate * days / period_days, in integers (the documented rounding rule)."""
    return rate_nanos * days // period_days


@dataclass
class Line:
    engineer: str
    period: Period
    name: str
    action: str  # allowance | rollover | bonus
    expires: Expiry
    segments: list[Segment] = field(default_factory=list)
    prorated: bool = True
    fixed_nanos: int | None = None  # bonus / rollover: one amount, not per day
    start: date | None = None       # bonus / rollover: the day it takes effect
    version: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> LineKey:
        return (self.engineer, self.period.label, self.name)

    def want_from(self, since: date | None) -> int:
        """The wanted amount for the days from `since` on (None: the whole period)."""
        if self.fixed_nanos is not None:
            return self.fixed_nanos if self.start is not None and (since is None or self.start >= since) else 0
        if not self.prorated:
            if not self.segments or (since is not None and self.segments[-1].end <= since):
                return 0
            return self.segments[0].rate_nanos
        total = 0
        for seg in self.segments:
            lo = seg.start if since is None else max(seg.start, since)
            if lo < seg.end:
                total += prorate(seg.rate_nanos, (seg.end - lo).days, self.period.days)
        return total

    def first_day(self) -> date | None:
        if self.fixed_nanos is not None:
            return self.start
        return self.segments[0].start if self.segments else None

    def last_day(self) -> date | None:
        """The last day the line is worth something on (inclusive)."""
        if self.fixed_nanos is not None:
            return self.start
        return self.segments[-1].end - timedelta(days=1) if self.segments else None

    def change_days(self) -> list[date]:
        """Segment starts and ends strictly inside the period."""
        days = {d for s in self.segments for d in (s.start, s.end)}
        if self.start is not None:
            days.add(self.start)
        return sorted(d for d in days if self.period.start < d < self.period.end)


def _pieces(period: Period, rows: list[RosterRow], policies: Policies) -> list[tuple[date, date, RosterRow, int]]:
    """[start, end) pieces of the period with one roster row and one policy version."""
    cuts = {period.start, period.end}
    for r in rows:
        cuts.update(d for d in (r.start, r.end_exclusive) if d is not None and period.start < d < period.end)
    cuts.update(d for d in policies.boundaries() if period.start < d < period.end)
    days = sorted(cuts)
    out = []
    for lo, hi in zip(days, days[1:], strict=False):
        row = next((r for r in rows if r.overlaps(lo, hi)), None)
        version = policies.in_force(lo)
        if row is not None and version is not None:
            out.append((lo, hi, row, version.version))
    return out


def _rule_lines(engineer: str, rows: list[RosterRow], policies: Policies, run_month: Period) -> list[Line]:
    by_version = {p.version: p for p in policies.versions}
    names: dict[tuple[str, str], None] = {}
    for p in policies.versions:
        names.update(((r.name, r.period), None) for r in p.rules)
    lines = []
    for name, kind in names:
        period = of_kind(kind, run_month)
        line = Line(engineer, period, name, "allowance", Expiry("period_end"))
        for lo, hi, row, version in _pieces(period, rows, policies):
            rule = next((r for r in by_version[version].rules if r.name == name and r.period == kind), None)
            if rule is None or not rule.matches(row.level, row.team):
                continue
            line.expires, line.prorated, line.version = rule.expires, rule.prorate, version
            last = line.segments[-1] if line.segments else None
            who = f"level {row.level}, team {row.team}"
            if last is not None and last.end == lo and last.rate_nanos == rule.amount_nanos:
                # Merge before rounding: a team move or a policy edit that leaves
                # this rule's rate alone must not change what the line is worth.
                who = last.who if who in last.who.split(" | ") else f"{last.who} | {who}"
                line.segments[-1] = Segment(last.start, hi, version, rule.amount_nanos, who)
            else:
                line.segments.append(Segment(lo, hi, version, rule.amount_nanos, who))
        lines.append(line)
    return lines


def _rule_in_force(policies: Policies, name: str, day: date) -> Rule | None:
    p = policies.in_force(day)
    return None if p is None else next((r for r in p.rules if r.name == name), None)


def _bonus_lines(engineer: str, rows: list[RosterRow], policies: Policies, run_month: Period) -> list[Line]:
    latest: dict[str, tuple[Bonus, int]] = {}
    for p in policies.versions:  # the highest version that defines a bonus wins
        for b in p.bonuses:
            latest[b.name] = (b, p.version)
    lines = []
    for bonus, version in latest.values():
        if not run_month.contains(bonus.on):
            continue
        row = next((r for r in rows if r.overlaps(bonus.on, bonus.on + timedelta(days=1))), None)
        if row is None or not bonus.matches(engineer, row.level, row.team):
            if bonus.engineers is None or engineer not in bonus.engineers:
                continue  # not for this engineer at all; no line
            lines.append(Line(engineer, run_month, bonus.name, "bonus", bonus.expires, fixed_nanos=0,
                              version=version, notes=[f"bonus {bonus.name}: not employed on {bonus.on}"]))
            continue
        lines.append(Line(engineer, run_month, bonus.name, "bonus", bonus.expires, fixed_nanos=bonus.amount_nanos,
                          start=bonus.on, version=version))
    return lines


def _rollover_lines(engineer: str, allowance: list[Line], policies: Policies,
                    unused: dict[tuple[str, str], int] | None) -> list[Line]:
    lines = []
    for line in allowance:
        first = line.first_day()
        rule = None if first is None else _rule_in_force(policies, line.name, first)
        if rule is None or not rule.rollover_cap_nanos:
            continue
        if unused is None:
            raise PolicyError(f"rule {rule.name} has a rollover cap: the rollover needs the previous period's "
                              "usage (give the event history: --events FILE or the Kafka source topics)")
        left = unused.get((engineer, line.name), 0)
        amount = min(rule.rollover_cap_nanos, left)
        lines.append(Line(engineer, line.period, line.name + labels.ROLLOVER_SUFFIX, "rollover", rule.expires,
                          fixed_nanos=amount, start=first, version=line.segments[0].version,
                          notes=[f"unused at the end of {previous(line.period).label}: {left} nanos, "
                                 f"cap {rule.rollover_cap_nanos} nanos"]))
    return lines


# -------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class Action:
    event: GrantIssued | GrantRevoked
    line: LineKey
    why: str


@dataclass
class LinePlan:
    line: Line
    lots: list[Lot]
    wanted_nanos: int
    live_nanos: int
    actions: list[Action]


@dataclass
class Plan:
    run_month: Period
    policy: str
    lines: list[LinePlan]

    @property
    def actions(self) -> list[Action]:
        return [a for lp in self.lines for a in lp.actions]

    @property
    def events(self) -> list[GrantIssued | GrantRevoked]:
        return [a.event for a in self.actions]


def _digest(parts: list) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _expiry(line: Line, effective: date, end: date | None) -> datetime | None:
    e = line.expires
    if e.kind == "period_end":
        at = line.period.end
    elif e.kind == "days":
        at = effective + timedelta(days=e.days)
    else:
        at = None
    if end is not None and (at is None or end < at):
        at = end  # a leaver's budget ends with the employment
    return None if at is None else day_start(at)


def _issue(line: Line, policy: str, action: str, amount: int, day: date, end: date | None,
           context: list, why: str) -> Action | None:
    expires = _expiry(line, day, end)
    if expires is not None and expires <= day_start(day):
        return None  # the employment ends before the grant would start
    digest = _digest([policy, line.key, action, day.isoformat(), amount, context])
    gid = labels.grant_id(policy, line.period.label, line.name, digest[:16])
    kind = labels.grant_kind(action, policy, line.version, line.name)
    event = GrantIssued(f"pol-issue:{digest[:32]}", line.engineer, gid, amount, day_start(day), expires, kind)
    return Action(event, line.key, why)


def _revoke(line: Line, lot: Lot, day: date, why: str) -> Action:
    digest = _digest([line.key, lot.grant_id, day.isoformat()])
    return Action(GrantRevoked(f"pol-revoke:{digest[:32]}", line.engineer, lot.grant_id, day_start(day)),
                  line.key, why)


def settle(line: Line, lots: list[Lot], policy: str, end: date | None) -> LinePlan:
    """The actions that bring the line's issued grants to what is wanted."""
    revoked = [lot.revoked_at.date() for lot in lots if lot.revoked_at is not None]
    since = max(revoked) if revoked else None
    live = [lot for lot in lots if lot.revoked_at is None]
    live_total = sum(lot.amount_nanos for lot in live)
    wanted = line.want_from(since)
    plan = LinePlan(line, lots, wanted, live_total, [])
    if wanted == live_total or (line.fixed_nanos is not None and line.action == "rollover" and lots):
        return plan
    context = sorted(lot.grant_id for lot in lots)
    if not lots:
        first = line.first_day()
        if first is None:  # a line without a day wants nothing, and returned above
            raise ValueError(f"{line.key}: wants {wanted} nanos but has no first day")
        action = _issue(line, policy, line.action, wanted, first, end, context,
                        f"{line.action} for {line.period.label}: {wanted} nanos from {first}")
        plan.actions.extend([action] if action else [])
        return plan
    floor = max([line.period.start] + ([since] if since else []))
    changes = [d for d in line.change_days() if d >= floor]
    if wanted > live_total:
        day = max([floor] + changes)
        last = line.last_day()
        if last is not None and day > last:
            day = max(floor, last)  # an extended leave date: the delta must start while employed
        delta = wanted - live_total
        action = _issue(line, policy, "adjust", delta, day, end, context,
                        f"wanted {wanted} nanos, issued {live_total}: +{delta} from {day}")
        plan.actions.extend([action] if action else [])
        return plan
    day = max([floor] + changes + [lot.effective_at.date() for lot in live])
    for lot in live:
        plan.actions.append(_revoke(line, lot, day, f"wanted {wanted} nanos < issued {live_total}: "
                                                   f"revoke {lot.grant_id} at {day}"))
    rest = line.want_from(day)
    if rest > 0:
        action = _issue(line, policy, "adjust", rest, day, end, context + [day.isoformat()],
                        f"replacement: {rest} nanos wanted from {day} on")
        plan.actions.extend([action] if action else [])
    return plan


def plan_period(policies: Policies, roster: list[RosterRow], run_month: Period, state: HistoryState,
                unused: dict[tuple[str, str], int] | None = None) -> Plan:
    """Every line of every engineer on the roster (or with grants of these periods)."""
    _check_versions(policies, run_month, state)
    rows = by_engineer(roster)
    periods = {run_month.label} | {of_kind(r.period, run_month).label for p in policies.versions for r in p.rules}
    engineers = sorted(set(rows) | {k[0] for k in state.lots if k[1] in periods})
    plan = Plan(run_month, policies.name, [])
    for engineer in engineers:
        mine = rows.get(engineer, [])
        lines = _rule_lines(engineer, mine, policies, run_month) if mine else []
        lines += _rollover_lines(engineer, lines, policies, unused) if mine else []
        lines += _bonus_lines(engineer, mine, policies, run_month) if mine else []
        known = {line.key for line in lines}
        for key in sorted(k for k in state.lots if k[0] == engineer and k[1] in periods and k not in known):
            # Issued before, but no longer on the roster or in the policy: wanted 0.
            period = run_month if key[1] == run_month.label else of_kind("quarter", run_month)
            lines.append(Line(engineer, period, key[2], "allowance", Expiry("never"),
                              version=max(state.versions.get(key[1], {0})),
                              notes=["not on the roster or in the policy any more"]))
        end = employment_end(mine) if mine else None
        for line in lines:
            plan.lines.append(settle(line, state.lots.get(line.key, []), policies.name, end))
    return plan


def _check_versions(policies: Policies, run_month: Period, state: HistoryState) -> None:
    given = {p.version for p in policies.versions}
    for label in (run_month.label, of_kind("quarter", run_month).label):
        missing = state.versions.get(label, set()) - given
        if missing:
            raise PolicyError(f"{policies.name}: version(s) {', '.join(map(str, sorted(missing)))} issued grants "
                              f"in {label}; pass those policy files too (--policy), so days before a later "
                              "version's effective_from keep their terms")


def rollover_unused(events_by_engineer: dict[str, list[Event]], policy: str, run_month: Period,
                    policies: Policies) -> dict[tuple[str, str], int]:
    """(engineer, rule) -> what the previous period's grants of the rule had left
    when they expired at that period's end, from an offline replay."""
    from compstream.domain.replay import replay_detailed

    wanted: dict[str, Period] = {}
    for p in policies.versions:
        for r in p.rules:
            if r.rollover_cap_nanos:
                wanted[r.name] = previous(of_kind(r.period, run_month))
    out: dict[tuple[str, str], int] = {}
    if not wanted:
        return out
    cutoff = max(day_start(p.end) for p in wanted.values())
    for engineer, events in sorted(events_by_engineer.items()):
        postings = replay_detailed(events, as_of=cutoff).postings.get(engineer, [])
        for posting in postings:
            if posting.kind != "expire" or posting.grant_id is None:
                continue
            ref = labels.parse_grant_id(posting.grant_id)
            if ref is None or ref.policy != policy or ref.line not in wanted:
                continue
            prev = wanted[ref.line]
            if ref.period == prev.label and posting.event_time == day_start(prev.end):
                key = (engineer, ref.line)
                out[key] = out.get(key, 0) + posting.amount_nanos
    return out
