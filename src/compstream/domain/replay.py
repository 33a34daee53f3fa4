"""Batch replay: any order in, the sorted fold out. Pure; used by the CLI and
the audit verifier.

Deduplication (rule 5) is keyed per engineer by event_id, the same scope the
streaming `EngineerBook` has (a book sees one engineer), so replay and stream
agree. The first occurrence in input order wins; a later one with the same
payload is a duplicate (counted), with a different payload a conflict
(reported, never applied).

`as_of=None` means everything: every event and every expiry, also expiries
later than the last event. With `as_of=T`, events and expiries with time <= T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from compstream.domain.alerts import DEFAULT_THRESHOLDS, Alert
from compstream.domain.balance import Balance, Posting, Report
from compstream.domain.events import (
    _RANKS,
    RANK_USAGE,
    CashCompensation,
    EngineerOffboarded,
    Event,
    GrantIssued,
    GrantRevoked,
    LeaderboardPrivacy,
    TeamAssigned,
    Usage,
)
from compstream.domain.ledger import Ledger


@dataclass
class ReplayResult:
    balances: dict[str, Balance]
    postings: dict[str, list[Posting]] = field(default_factory=dict)
    alerts: dict[str, list[Alert]] = field(default_factory=dict)
    reports: list[Report] = field(default_factory=list)  # conflicts first, then ledger reports
    events_in: int = 0
    duplicates: int = 0
    conflicts: int = 0
    unique_events: int = 0
    hr_events: int = 0


_NOT_LEDGER = (TeamAssigned, LeaderboardPrivacy, CashCompensation)


def _key(e: Event) -> tuple[Any, ...]:
    if isinstance(e, Usage):
        return (e.occurred_at, RANK_USAGE, e.event_id)
    return (e.effective_at, _RANKS[type(e)], e.event_id)


def _time(e: Event) -> datetime:
    return e.occurred_at if isinstance(e, Usage) else e.effective_at


def collect(events: Iterable[Event], result: ReplayResult) -> dict[str, dict[str, Event]]:
    """Group by engineer and deduplicate; conflicts go to result.reports with
    their input positions (0-based index in `events`)."""
    groups: dict[str, dict[str, Event]] = {}
    n = dups = 0
    get = groups.get
    for e in events:
        if type(e) in _NOT_LEDGER:  # HR events (teams, privacy, pay) move no money
            result.hr_events += 1
            n += 1
            continue
        d = get(e.engineer_id)
        if d is None:
            d = groups[e.engineer_id] = {}
        size = len(d)
        prev = d.setdefault(e.event_id, e)
        if len(d) == size:  # seen before (maybe the very same object)
            if prev == e:
                dups += 1
            else:
                result.conflicts += 1
                result.reports.append(Report(
                    e.engineer_id, e.event_id, "conflict",
                    "same event_id as an earlier event with a different payload; not applied",
                    position=n,
                ))
        n += 1
    result.events_in = n
    result.duplicates = dups
    return groups


def fold_engineer(
    engineer_id: str,
    events: Iterable[Event],
    as_of: datetime | None = None,
    *,
    record: bool = False,
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS,
) -> Ledger:
    """Sort one engineer's unique events and fold them; returns the ledger."""
    evs = sorted(events, key=_key)
    ledger = Ledger(engineer_id, record=record, thresholds=thresholds)
    apply = ledger.apply
    if as_of is None:
        for e in evs:
            apply(e)
    else:
        for e in evs:
            if _time(e) > as_of:
                break
            apply(e)
    ledger.expire_through(as_of, inclusive=True)
    return ledger


def replay_detailed(
    events: Iterable[Event],
    as_of: datetime | None = None,
    *,
    postings: bool = True,
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS,
) -> ReplayResult:
    """Replay with postings, alerts and reports (postings=False: balances and
    reports only, several times faster). Conflict reports carry `position`,
    the 0-based index of the rejected event in `events`."""
    result = ReplayResult(balances={})
    groups = collect(events, result)
    applied = 0
    for eng in sorted(groups):
        # pop: each engineer's events are freed right after its fold, while
        # still in cache, instead of all at once at the end (measurably cheaper)
        evs = groups.pop(eng).values()
        ledger = fold_engineer(eng, evs, as_of, record=postings, thresholds=thresholds)
        applied += len(evs)
        result.balances[eng] = ledger.balance()
        p, a, r = ledger.drain()
        if postings:
            result.postings[eng] = p
            result.alerts[eng] = a
        result.reports.extend(r)
    result.unique_events = applied
    return result


def replay(events: Iterable[Event], as_of: datetime | None = None) -> dict[str, Balance]:
    """engineer_id -> Balance after every event (and expiry) up to `as_of`."""
    return replay_detailed(events, as_of, postings=False).balances


__all__ = [
    "ReplayResult", "replay", "replay_detailed", "fold_engineer", "collect",
    "GrantIssued", "GrantRevoked", "EngineerOffboarded", "Usage",
]
