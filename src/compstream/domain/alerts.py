"""Deterministic budget alerts (ledger contract rule 9).

Utilization of an engineer's open grants is
    used / original = (sum of original amounts - sum of remaining) / sum of original amounts
over the grants open after a ledger step. Integer comparison only:
    crossed(th) <=> used * 100 >= th * original     (th in whole percent)

* A threshold fires once when utilization reaches it; it re-arms when
  utilization falls below it again (a new grant, a refund, or a used grant
  leaving the open set). With no open grant nothing fires or re-arms.
* `overdraft` fires when overdraft goes from 0 to > 0 (the first overdraft;
  again only after a correction refund brought it back to 0).
Alerts are evaluated after each event or expiry, in ledger order, so replay
and streaming produce the same alerts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compstream.domain.events import format_time

DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
UTILIZATION = "utilization"
OVERDRAFT = "overdraft"


class AlertConfigError(ValueError):
    pass


def check_thresholds(thresholds: tuple[int, ...]) -> tuple[int, ...]:
    out = tuple(thresholds)
    if not out or len(out) > 30:
        raise AlertConfigError("need 1..30 thresholds")
    for th in out:
        if isinstance(th, bool) or not isinstance(th, int) or not 0 < th <= 100:
            raise AlertConfigError(f"threshold must be an integer percent in 1..100, got {th!r}")
    if list(out) != sorted(set(out)):
        raise AlertConfigError("thresholds must be strictly increasing")
    return out


@dataclass(frozen=True, slots=True)
class Alert:
    engineer_id: str
    kind: str  # utilization | overdraft
    threshold_pct: int | None  # None for overdraft
    cause_event_id: str
    event_time: datetime
    used_nanos: int  # of the open grants
    open_amount_nanos: int  # original amounts of the open grants
    overdraft_nanos: int
    available_nanos: int

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["event_time"] = format_time(self.event_time)
        return out


def evaluate(
    engineer_id: str,
    thresholds: tuple[int, ...],
    fired: int,
    overdraft_flag: bool,
    open_amount: int,
    remaining: int,
    overdraft: int,
    cause_event_id: str,
    event_time: datetime,
    out: list[Alert],
) -> tuple[int, bool]:
    """One evaluation step. `fired` is a bitmask over thresholds. Appends the
    new alerts to `out`; returns the new (fired, overdraft_flag)."""
    if open_amount:
        used = open_amount - remaining
        scaled = used * 100
        for i, th in enumerate(thresholds):
            bit = 1 << i
            if scaled >= th * open_amount:
                if not fired & bit:
                    fired |= bit
                    out.append(Alert(
                        engineer_id, UTILIZATION, th, cause_event_id, event_time,
                        used, open_amount, overdraft, remaining - overdraft,
                    ))
            elif fired & bit:
                fired &= ~bit
    if overdraft > 0:
        if not overdraft_flag:
            overdraft_flag = True
            out.append(Alert(
                engineer_id, OVERDRAFT, None, cause_event_id, event_time,
                open_amount - remaining, open_amount, overdraft, remaining - overdraft,
            ))
    else:
        overdraft_flag = False
    return fired, overdraft_flag
