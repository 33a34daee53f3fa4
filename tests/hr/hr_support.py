"""Builders shared by the HR tests: policies and rosters from text, and a
state that 'publishes' a plan's events (as if they came back from the topic)."""

from __future__ import annotations

from datetime import date

from compstream.hr.allocate import HistoryState, Plan, plan_period
from compstream.hr.periods import parse_month
from compstream.hr.policy import Policies, parse_policy
from compstream.hr.roster import parse_roster

USD = 10**9


def policy_text(version: int = 1, effective_from: str = "2026-01-01", rules: str = "", bonuses: str = "",
                name: str = "eng") -> str:
    return f'[policy]\nname = "{name}"\nversion = {version}\neffective_from = {effective_from}\n{rules}\n{bonuses}'


def rule(name: str, usd: str, *, period: str = "month", expires: str = "period_end", levels=None, teams=None,
         cap: str | None = None, prorate: bool | None = None) -> str:
    out = f'[[rule]]\nname = "{name}"\namount_usd = "{usd}"\nperiod = "{period}"\nexpires = "{expires}"\n'
    if levels:
        out += f"levels = {list(levels)!r}\n".replace("'", '"')
    if teams:
        out += f"teams = {list(teams)!r}\n".replace("'", '"')
    if cap:
        out += f'rollover_cap_usd = "{cap}"\n'
    if prorate is not None:
        out += f"prorate = {'true' if prorate else 'false'}\n"
    return out


def policies(*texts: str) -> Policies:
    return Policies([parse_policy(t, f"policy{i}.toml") for i, t in enumerate(texts, 1)])


def roster(*rows: str) -> list:
    return parse_roster("engineer,level,team,start,end\n" + "\n".join(rows) + "\n", "roster.csv")


class Published:
    """The events a run would have published, fed back as history."""

    def __init__(self, pols: Policies):
        self.pols = pols
        self.events: list = []

    def state(self) -> HistoryState:
        return HistoryState.from_events(self.pols.name, self.events)

    def run(self, rows, month: str, unused=None, pols: Policies | None = None) -> Plan:
        plan = plan_period(pols or self.pols, rows, parse_month(month), self.state(), unused)
        self.events.extend(plan.events)
        return plan


def issued(plan: Plan, engineer: str | None = None) -> list:
    return [e for e in plan.events if e.type == "grant_issued" and engineer in (None, e.engineer_id)]


def revoked(plan: Plan, engineer: str | None = None) -> list:
    return [e for e in plan.events if e.type == "grant_revoked" and engineer in (None, e.engineer_id)]


def day(text: str) -> date:
    return date.fromisoformat(text)
