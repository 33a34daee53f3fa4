"""`grants issue --explain ENGINEER`: why an engineer gets what, in words."""

from __future__ import annotations

from compstream.domain.events import GrantIssued
from compstream.hr.allocate import LinePlan, Plan, prorate
from compstream.reports.money import usd


def _money(nanos: int) -> str:
    return f"{usd(nanos, 2)} ({nanos} nanos)"


def _line(lp: LinePlan) -> list[str]:
    line = lp.line
    out = [f"  {line.name} [{line.action}, {line.period.label}, {line.period.days} days, expires {line.expires}]"]
    for seg in line.segments:
        days = (seg.end - seg.start).days
        part = prorate(seg.rate_nanos, days, line.period.days) if line.prorated else seg.rate_nanos
        how = (f"{usd(seg.rate_nanos)} x {days}/{line.period.days} days, floored" if line.prorated
               else f"{usd(seg.rate_nanos)}, not pro-rated")
        out.append(f"    {seg.start} .. {seg.end} (excl.)  {seg.who}, policy version {seg.version}: "
                   f"{how} = {_money(part)}")
    if line.fixed_nanos is not None and line.start is not None:
        out.append(f"    on {line.start}: {_money(line.fixed_nanos)}")
    out.extend(f"    note: {n}" for n in line.notes)
    if not line.segments and line.fixed_nanos is None:
        out.append("    no day of the period matches this rule")
    out.append(f"    wanted {_money(lp.wanted_nanos)}; issued and not revoked {_money(lp.live_nanos)}")
    for lot in lp.lots:
        state = f"revoked {lot.revoked_at:%Y-%m-%d}" if lot.revoked_at else "live"
        out.append(f"    had {lot.grant_id} {_money(lot.amount_nanos)} from {lot.effective_at:%Y-%m-%d} "
                   f"({lot.kind}, {state})")
    if not lp.actions:
        out.append("    -> nothing to do")
    for action in lp.actions:
        e = action.event
        what = (f"issue {e.grant_id} {_money(e.amount_nanos)} at {e.effective_at:%Y-%m-%d}, "
                f"expires {'never' if e.expires_at is None else f'{e.expires_at:%Y-%m-%d}'}, kind {e.kind}"
                if isinstance(e, GrantIssued) else f"revoke {e.grant_id} at {e.effective_at:%Y-%m-%d}")
        out.append(f"    -> {what}  ({action.why})")
    return out


def explain(plan: Plan, engineer: str) -> str:
    mine = [lp for lp in plan.lines if lp.line.engineer == engineer]
    head = f"{engineer}, run month {plan.run_month.label}, policy {plan.policy}:"
    if not mine:
        return head + "\n  not on the roster for this period and no grants of it: nothing"
    return "\n".join([head] + [text for lp in mine for text in _line(lp)])
