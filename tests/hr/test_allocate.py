"""Allowance allocation: pro-rating, adjustments, rollover, policy versions, idempotence."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.domain.events import Usage
from compstream.domain.grant_labels import parse_grant_id, parse_kind
from compstream.domain.replay import replay
from compstream.hr.allocate import HistoryState, plan_period, prorate, rollover_unused
from compstream.hr.periods import parse_month
from compstream.hr.policy import PolicyError

from .hr_support import USD, Published, issued, policies, policy_text, revoked, roster, rule

BASE = policies(policy_text(rules=rule("base", "310")))  # $10/day in a 31-day month


def test_full_month_is_exactly_the_rate_and_carries_policy_and_rule():
    plan = Published(BASE).run(roster("ann,L3,core,2025-01-01,"), "2026-12")
    (grant,) = issued(plan)
    assert grant.amount_nanos == 310 * USD
    assert grant.effective_at == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert grant.expires_at == datetime(2027, 1, 1, tzinfo=timezone.utc)
    label = parse_kind(grant.kind)
    assert (label.action, label.policy_label, label.line) == ("allowance", "eng@1", "base")
    assert parse_grant_id(grant.grant_id).period == "2026-12"


def test_joiner_mid_month_is_prorated_from_the_start_day():
    plan = Published(BASE).run(roster("joe,L3,core,2026-12-10,"), "2026-12")
    (grant,) = issued(plan)
    assert grant.amount_nanos == 22 * 10 * USD  # Dec 10..31 = 22 days
    assert grant.effective_at.date().isoformat() == "2026-12-10"


def test_leaver_is_prorated_and_the_grant_ends_with_the_employment():
    plan = Published(BASE).run(roster("lea,L3,core,2020-01-01,2026-12-20"), "2026-12")
    (grant,) = issued(plan)
    assert grant.amount_nanos == 20 * 10 * USD
    assert grant.expires_at == datetime(2026, 12, 21, tzinfo=timezone.utc)


def test_rerun_issues_nothing_and_ids_are_deterministic():
    rows = roster("ann,L3,core,2025-01-01,", "joe,L4,core,2026-12-10,")
    pub = Published(BASE)
    first = pub.run(rows, "2026-12")
    assert len(first.events) == 2
    assert pub.run(rows, "2026-12").events == []
    again = plan_period(BASE, rows, parse_month("2026-12"), HistoryState("eng"))
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]


def test_later_leaver_revokes_at_the_leave_day_and_keeps_what_was_used():
    pub = Published(BASE)
    pub.run(roster("lea,L3,core,2020-01-01,"), "2026-12")
    plan = pub.run(roster("lea,L3,core,2020-01-01,2026-12-20"), "2026-12")
    (rev,) = revoked(plan)
    assert rev.effective_at == datetime(2026, 12, 21, tzinfo=timezone.utc)
    assert issued(plan) == []  # nothing wanted after the last day
    assert pub.run(roster("lea,L3,core,2020-01-01,2026-12-20"), "2026-12").events == []
    # Used 150 before leaving: the ledger keeps that consumption, forfeits the rest.
    use = Usage("u1", "lea", "p", "m", datetime(2026, 12, 5, tzinfo=timezone.utc), 1, 1, 0, 0, 150 * USD)
    bal = replay(pub.events + [use])["lea"]
    assert (bal.consumed_nanos, bal.revoked_nanos, bal.remaining_nanos) == (150 * USD, 160 * USD, 0)


def test_level_change_mid_period_with_a_higher_rate_is_a_delta_grant():
    pols = policies(policy_text(rules=rule("base", "310", levels=["L3"]) + rule("base-l4", "620", levels=["L4"])))
    pub = Published(pols)
    pub.run(roster("max,L3,core,2020-01-01,"), "2026-12")
    plan = pub.run(roster("max,L3,core,2020-01-01,2026-12-15", "max,L4,core,2026-12-16,"), "2026-12")
    # base (L3): wanted 15 days = 150 < 310 issued -> revoke at Dec 16, replacement 0.
    (rev,) = revoked(plan)
    assert rev.effective_at.date().isoformat() == "2026-12-16"
    # base-l4: 16 days of 620/31 = 320, from Dec 16.
    (new,) = issued(plan)
    assert (new.amount_nanos, new.effective_at.date().isoformat()) == (320 * USD, "2026-12-16")
    assert parse_kind(new.kind).line == "base-l4"
    assert pub.run(roster("max,L3,core,2020-01-01,2026-12-15", "max,L4,core,2026-12-16,"), "2026-12").events == []


def test_rate_increase_in_the_same_rule_is_a_delta_adjustment_from_the_change_day():
    pub = Published(BASE)
    pub.run(roster("ann,L3,core,2020-01-01,"), "2026-12")
    richer = policies(policy_text(rules=rule("base", "310")),
                      policy_text(version=2, effective_from="2026-12-22", rules=rule("base", "620")))
    plan = pub.run(roster("ann,L3,core,2020-01-01,"), "2026-12", pols=richer)
    (delta,) = issued(plan)
    # Dec 22..31 = 10 days: 10 * 20 - 10 * 10 = +100, effective on the edit day, under version 2.
    assert delta.amount_nanos == 100 * USD
    assert delta.effective_at.date().isoformat() == "2026-12-22"
    assert parse_kind(delta.kind).action == "adjust" and parse_kind(delta.kind).version == 2
    assert pub.run(roster("ann,L3,core,2020-01-01,"), "2026-12", pols=richer).events == []


def test_policy_edited_mid_quarter_changes_only_the_days_after_the_edit():
    q1 = policy_text(rules=rule("pool", "920", period="quarter"))  # Q4 has 92 days: $10/day
    pub = Published(policies(q1))
    (first,) = issued(pub.run(roster("qin,L3,core,2020-01-01,"), "2026-10"))
    assert first.amount_nanos == 920 * USD
    assert parse_grant_id(first.grant_id).period == "2026-Q4"
    assert pub.run(roster("qin,L3,core,2020-01-01,"), "2026-11").events == []  # same quarter, same grant
    cut = policies(q1, policy_text(version=2, effective_from="2026-12-01", rules=rule("pool", "460", period="quarter")))
    plan = pub.run(roster("qin,L3,core,2020-01-01,"), "2026-12", pols=cut)
    (rev,) = revoked(plan)
    (replacement,) = issued(plan)
    assert rev.effective_at.date().isoformat() == "2026-12-01"
    assert replacement.amount_nanos == 460 * 31 * USD // 92  # December at the new rate only
    assert pub.run(roster("qin,L3,core,2020-01-01,"), "2026-12", pols=cut).events == []
    # Without version 1 the days before the edit would lose their terms: refused.
    with pytest.raises(PolicyError, match="version"):
        plan_period(policies(policy_text(version=2, effective_from="2026-12-01",
                                         rules=rule("pool", "460", period="quarter"))),
                    roster("qin,L3,core,2020-01-01,"), parse_month("2026-12"), pub.state())


def test_team_move_under_a_team_agnostic_rule_changes_nothing():
    pub = Published(BASE)
    pub.run(roster("tom,L3,core,2020-01-01,"), "2026-12")
    moved = roster("tom,L3,core,2020-01-01,2026-12-09", "tom,L3,infra,2026-12-10,")
    assert pub.run(moved, "2026-12").events == []


def test_removed_from_the_roster_revokes():
    pub = Published(BASE)
    pub.run(roster("ann,L3,core,2020-01-01,", "bea,L3,core,2020-01-01,"), "2026-12")
    plan = pub.run(roster("ann,L3,core,2020-01-01,"), "2026-12")
    assert [e.engineer_id for e in plan.events] == ["bea"] and revoked(plan)


def test_rollover_is_capped_and_comes_from_what_expired_unused():
    pols = policies(policy_text(rules=rule("base", "300", cap="50")))
    pub = Published(pols)
    rows = roster("ann,L3,core,2020-01-01,", "ben,L3,core,2020-01-01,")
    pub.run(rows, "2026-11", unused={})
    nov = [e for e in pub.events]
    used = [Usage("u-ann", "ann", "p", "m", datetime(2026, 11, 5, tzinfo=timezone.utc), 1, 1, 0, 0, 280 * USD),
            Usage("u-ben", "ben", "p", "m", datetime(2026, 11, 5, tzinfo=timezone.utc), 1, 1, 0, 0, 100 * USD)]
    by_engineer = {}
    for e in nov + used:
        by_engineer.setdefault(e.engineer_id, []).append(e)
    unused = rollover_unused(by_engineer, "eng", parse_month("2026-12"), pols)
    assert unused == {("ann", "base"): 20 * USD, ("ben", "base"): 200 * USD}
    plan = pub.run(rows, "2026-12", unused=unused)
    rolls = {e.engineer_id: e.amount_nanos for e in issued(plan) if parse_kind(e.kind).action == "rollover"}
    assert rolls == {"ann": 20 * USD, "ben": 50 * USD}
    # Fixed once issued, even if later usage changes what was unused.
    assert pub.run(rows, "2026-12", unused={("ann", "base"): 0, ("ben", "base"): 0}).events == []


def test_rollover_without_usage_history_is_refused():
    pols = policies(policy_text(rules=rule("base", "300", cap="50")))
    with pytest.raises(PolicyError, match="rollover"):
        plan_period(pols, roster("ann,L3,core,2020-01-01,"), parse_month("2026-12"), HistoryState("eng"), None)


def test_bonus_is_issued_once_in_its_month_to_employed_engineers():
    bonus = ('[[bonus]]\nname = "launch"\nengineers = ["ann", "gone"]\namount_usd = "250"\n'
             'on = 2026-12-15\nexpires = "30d"\n')
    pols = policies(policy_text(rules=rule("base", "310"), bonuses=bonus))
    pub = Published(pols)
    rows = roster("ann,L3,core,2020-01-01,", "gone,L3,core,2020-01-01,2026-12-01")
    plan = pub.run(rows, "2026-12")
    bonuses = [e for e in issued(plan) if parse_kind(e.kind).action == "bonus"]
    assert [(e.engineer_id, e.amount_nanos) for e in bonuses] == [("ann", 250 * USD)]
    assert bonuses[0].expires_at - bonuses[0].effective_at == timedelta(days=30)
    assert [e for e in pub.run(rows, "2026-12").events] == []


@given(rate=st.integers(1, 10**15), cuts=st.lists(st.integers(1, 30), max_size=6, unique=True))
def test_prorated_pieces_never_exceed_the_rate_and_lose_less_than_a_nano_per_piece(rate, cuts):
    bounds = [0] + sorted(cuts) + [31]
    parts = [prorate(rate, b - a, 31) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert sum(parts) <= rate
    assert rate - sum(parts) < len(parts)
    assert prorate(rate, 31, 31) == rate


_DAYS = st.integers(0, 59)  # days from 2026-11-15


@st.composite
def rosters(draw):
    lines = []
    for name in ("ann", "bob", "cat"):
        if draw(st.booleans()):
            start = draw(_DAYS)
            end = draw(st.one_of(st.none(), st.integers(start, 70)))
            level = draw(st.sampled_from(["L3", "L5"]))
            base = datetime(2026, 11, 15)
            s = (base + timedelta(days=start)).date().isoformat()
            e = "" if end is None else (base + timedelta(days=end)).date().isoformat()
            lines.append(f"{name},{level},core,{s},{e}")
    return roster(*lines)


TWO_RULES = policies(policy_text(rules=rule("base", "310") + rule("senior", "100.000000007", levels=["L5"])))


@settings(max_examples=100, deadline=None)
@given(changes=st.lists(rosters(), min_size=1, max_size=3))
def test_any_roster_change_reaches_a_fixed_point_and_the_replay_is_consistent(changes):
    pub = Published(TWO_RULES)
    for rows in changes:
        pub.run(rows, "2026-12")
    last = changes[-1]
    assert pub.run(last, "2026-12").events == []  # the difference was issued; nothing left
    state = pub.state()
    fresh = plan_period(TWO_RULES, last, parse_month("2026-12"), HistoryState("eng"))
    keys = {lp.line.key for lp in fresh.lines}
    for lp in fresh.lines:  # what is live now equals what a fresh run wants, from the last revocation on
        lots = state.lots.get(lp.line.key, [])
        revs = [lot.revoked_at.date() for lot in lots if lot.revoked_at]
        live = sum(lot.amount_nanos for lot in lots if not lot.revoked_at)
        assert live == lp.line.want_from(max(revs) if revs else None), lp.line.key
    for key, lots in state.lots.items():  # engineers no longer on the roster hold nothing live
        if key not in keys:
            assert all(lot.revoked_at for lot in lots), key
    replay(pub.events)  # the ledger accepts every event (no invalid grants)
    assert all(e.event_id for e in pub.events) and len({e.event_id for e in pub.events}) == len(pub.events)
