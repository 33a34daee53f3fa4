"""Builders and strategies for the ledger tests."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from compstream.domain.events import EngineerOffboarded, GrantIssued, GrantRevoked, Usage, event_sort_key

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
US = timedelta(microseconds=1)

# Modest budgets: the whole domain suite stays well under a minute on 2 cores.
# COMPSTREAM_HYPOTHESIS_SCALE=10 for a deeper local run.
_SCALE = float(os.environ.get("COMPSTREAM_HYPOTHESIS_SCALE", "1"))
PROPS = settings(max_examples=int(150 * _SCALE), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STATEFUL = settings(max_examples=int(40 * _SCALE), stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def at(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def grant(eid: str, gid: str, amount: int, eff: float, exp: float | None = None,
          eng: str = "e1", kind: str = "monthly") -> GrantIssued:
    return GrantIssued(eid, eng, gid, amount, at(eff), None if exp is None else at(exp), kind)


def usage(eid: str, h: float, cost: int | None, eng: str = "e1", tokens: int = 10,
          corrects: str | None = None) -> Usage:
    return Usage(eid, eng, "anthropic", "claude", at(h), tokens, tokens // 2, 0, 0, cost,
                 corrects_event_id=corrects)


def revoke(eid: str, gid: str, h: float, eng: str = "e1") -> GrantRevoked:
    return GrantRevoked(eid, eng, gid, at(h))


def offboard(eid: str, h: float, eng: str = "e1") -> EngineerOffboarded:
    return EngineerOffboarded(eid, eng, at(h))


def event_time(e) -> datetime:
    return event_sort_key(e)[0]


# ------------------------------------------------------------- strategies
# Few instants and few grant ids, so ties and collisions are common.
_hours = st.integers(0, 12)
_engs = st.sampled_from(["e1", "e2"])
_gids = st.sampled_from(["A", "B", "C", "D", "E", "F"])


@st.composite
def _event(draw, idx: int):
    eng = draw(_engs)
    kind = draw(st.sampled_from(["grant", "grant", "usage", "usage", "usage", "usage",
                                 "revoke", "offboard", "correction", "unpriced"]))
    eid = f"ev{idx}"
    h = draw(_hours)
    if kind == "grant":
        exp = draw(st.one_of(st.none(), st.integers(h + 1, 14)))
        gid = draw(_gids)  # a small pool: revocations hit, reuse is exercised too
        return grant(eid, gid, draw(st.integers(1, 100)), h, exp, eng=eng)
    if kind == "usage":
        return usage(eid, h, draw(st.integers(0, 80)), eng=eng, tokens=draw(st.integers(0, 50)))
    if kind == "unpriced":
        return usage(eid, h, None, eng=eng, tokens=draw(st.integers(0, 50)))
    if kind == "correction":
        return usage(eid, h, draw(st.integers(-60, 20)), eng=eng,
                     tokens=draw(st.integers(-20, 20)), corrects="ev0")
    if kind == "revoke":
        return revoke(eid, draw(_gids), h, eng=eng)
    return offboard(eid, h, eng=eng)


@st.composite
def event_lists(draw, max_size: int = 25):
    n = draw(st.integers(0, max_size))
    return [draw(_event(i)) for i in range(n)]
