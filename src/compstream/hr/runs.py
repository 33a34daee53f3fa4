"""One `hr import` and one `grants issue`, without the CLI: files in, events out.

The CLI (cli/hr_cmd.py) and the demo call these; both then publish only
`new` (event ids not in the prior history) to the grants topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Callable

from compstream.domain.events import Event
from compstream.hr.allocate import HistoryState, Plan, plan_period, rollover_unused
from compstream.hr.history import Prior
from compstream.hr.intake import FileResult, Known, check_references, parse_file
from compstream.hr.periods import parse_month
from compstream.hr.policy import Policies, load_policy
from compstream.hr.roster import load_roster


def load_policies(policy_files: list[Path]) -> Policies:
    return Policies([load_policy(p) for p in policy_files])


def rolls_over(policies: Policies) -> bool:
    """Whether the prior history must include the usage topic (a rule rolls budget over)."""
    return any(r.rollover_cap_nanos for p in policies.versions for r in p.rules)


@dataclass
class Issue:
    plan: Plan
    state: HistoryState

    @property
    def new(self) -> list[Event]:
        return [e for e in self.plan.events if e.event_id not in self.state.event_ids]


def issue_grants(period: str, policies: Policies, roster_file: Path, prior: Prior) -> Issue:
    """Raises PeriodError, PolicyError or RosterError on bad input."""
    run_month = parse_month(period)
    roster = load_roster(roster_file)
    state = HistoryState.from_events(policies.name, prior.events)
    unused = rollover_unused(prior.by_engineer(), policies.name, run_month, policies) if rolls_over(policies) else None
    return Issue(plan_period(policies, roster, run_month, state, unused), state)


@dataclass
class Import:
    results: list[FileResult] = field(default_factory=list)
    new: list[Event] = field(default_factory=list)  # accepted, not published before, once each

    @property
    def rejected(self) -> list[FileResult]:
        return [r for r in self.results if not r.accepted]

    @property
    def accepted_rows(self) -> int:
        return sum(len(r.rows) for r in self.results if r.accepted)


def import_texts(files: list[tuple[str, str]], prior: Prior, roster_engineers: AbstractSet[str] = frozenset(),
                 on_row: Callable[[str], Callable[[], None] | None] = lambda name: None) -> Import:
    """(name, text) per file, in order; a file may revoke grants of an earlier accepted one."""
    known = Known(set(roster_engineers))
    for e in prior.events:
        known.learn(e)
    published = {e.event_id for e in prior.events}
    out = Import()
    for name, text in files:
        result = parse_file(text, name, on_row=on_row(name))
        if result.accepted:
            check_references(result, known)
        out.results.append(result)
        if result.accepted:
            for row in result.rows:
                if row.event.event_id not in published:
                    published.add(row.event.event_id)
                    out.new.append(row.event)
    return out
