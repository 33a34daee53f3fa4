"""Hand-written cases, one per contract rule and tie rule."""

from __future__ import annotations

import pytest
from ledger_support import at, grant, offboard, revoke, usage

from compstream.domain.chain import GENESIS_HASH, verify_chain
from compstream.domain.events import EventError, event_from_dict, event_to_dict
from compstream.domain.replay import replay, replay_detailed


def bal(events, as_of=None, eng="e1"):
    return replay(events, as_of)[eng]


def kinds(result, eng="e1"):
    return [(p.kind, p.grant_id, p.amount_nanos) for p in result.postings[eng]]


def test_usage_at_expires_at_cannot_draw_from_that_grant():
    b = bal([grant("g", "A", 100, 0, 10), usage("u", 10, 30)])
    assert (b.consumed_nanos, b.overdraft_nanos, b.expired_nanos) == (0, 30, 100)
    b = bal([grant("g", "A", 100, 0, 10), usage("u", 9.999, 30)])
    assert (b.consumed_nanos, b.overdraft_nanos, b.expired_nanos) == (30, 0, 70)


def test_usage_at_issue_instant_draws():
    b = bal([usage("a-usage-first-by-id", 5, 30), grant("z-grant", "A", 100, 5)])
    assert (b.consumed_nanos, b.overdraft_nanos, b.remaining_nanos) == (30, 0, 70)


def test_usage_at_revoke_instant_cannot_draw():
    b = bal([grant("g", "A", 100, 0), revoke("r", "A", 5), usage("u", 5, 30)])
    assert (b.revoked_nanos, b.consumed_nanos, b.overdraft_nanos) == (100, 0, 30)


def test_offboarding_at_same_instant_beats_usage():
    b = bal([grant("g", "A", 100, 0), offboard("o", 5), usage("a", 5, 30)])
    assert (b.forfeited_nanos, b.overdraft_nanos) == (100, 30)


def test_expiry_beats_revocation_at_same_instant():
    r = replay_detailed([grant("g", "A", 100, 0, 5), usage("u", 1, 40), revoke("r", "A", 5)])
    b = r.balances["e1"]
    assert (b.expired_nanos, b.revoked_nanos, b.remaining_nanos) == (60, 0, 0)
    assert [(x.code, x.event_id) for x in r.reports] == [("revoke_closed_grant", "r")]
    assert r.postings["e1"][-1].cause_event_id == "expiry:A"


def test_draw_order_soonest_expiry_first_never_expiring_last():
    r = replay_detailed([
        grant("g1", "NEVER", 50, 0),
        grant("g2", "LATE", 50, 0, 20),
        grant("g3", "SOON", 50, 0, 10),
        usage("u", 1, 120),
    ])
    assert [k for k in kinds(r) if k[0] == "consume"] == [
        ("consume", "SOON", 50), ("consume", "LATE", 50), ("consume", "NEVER", 20)]


def test_draw_order_ties_by_effective_at_then_grant_id():
    r = replay_detailed([
        grant("g1", "B", 10, 1, 10), grant("g2", "A", 10, 1, 10), grant("g3", "Z", 10, 0, 10),
        grant("g4", "N2", 10, 1), grant("g5", "N1", 10, 1), usage("u", 2, 50),
    ])
    assert [k[1] for k in kinds(r) if k[0] == "consume"] == ["Z", "A", "B", "N1", "N2"]


def test_offboarding_forfeits_open_grants_and_rehire_is_normal():
    events = [grant("g1", "A", 100, 0, 50), grant("g2", "B", 40, 0), usage("u1", 1, 30),
              offboard("o", 2), usage("u2", 3, 5), grant("g3", "C", 80, 4), usage("u3", 5, 20)]
    b = bal(events)
    assert b.forfeited_nanos == 70 + 40
    assert (b.overdraft_nanos, b.consumed_nanos, b.remaining_nanos) == (5, 50, 60)
    assert b.available_nanos == 55
    assert b.conserved()


def test_revoke_unknown_or_closed_grant_changes_nothing_and_is_reported():
    base = [grant("g", "A", 100, 0), usage("u", 1, 10)]
    events = base + [revoke("r1", "NOPE", 2), revoke("r2", "A", 3), revoke("r3", "A", 4),
                     revoke("r0", "LATER", 0), grant("g2", "LATER", 5, 1)]
    r = replay_detailed(events)
    assert [(x.code, x.event_id) for x in r.reports] == [
        ("revoke_unknown_grant", "r0"), ("revoke_unknown_grant", "r1"),
        ("revoke_closed_grant", "r3")]
    b = r.balances["e1"]
    assert (b.revoked_nanos, b.remaining_nanos, b.issued_nanos) == (90, 5, 105)


def test_duplicate_ignored_and_conflict_reported_first_wins():
    u = usage("u", 1, 10)
    clash = usage("u", 1, 99)
    r = replay_detailed([grant("g", "A", 100, 0), u, u, clash])
    assert r.balances["e1"].consumed_nanos == 10
    assert (r.duplicates, r.conflicts) == (1, 1)
    (rep,) = r.reports
    assert (rep.code, rep.event_id, rep.position) == ("conflict", "u", 3)


def test_as_of_includes_expiries_and_events_at_the_instant():
    events = [grant("g", "A", 100, 0, 10), usage("u", 10, 5), usage("v", 11, 5)]
    before = bal(events, at(10) - (at(1) - at(0)) / 3600 / 10**6)  # 1 us before expiry
    assert (before.expired_nanos, before.remaining_nanos, before.overdraft_nanos) == (0, 100, 0)
    b = bal(events, at(10))
    assert (b.expired_nanos, b.overdraft_nanos, b.remaining_nanos) == (100, 5, 0)
    assert bal(events, at(10.5)) == b


def test_as_of_none_applies_every_expiry():
    b = bal([grant("g", "A", 100, 0, 10_000), grant("g2", "B", 7, 0), usage("u", 1, 30)])
    assert (b.expired_nanos, b.remaining_nanos) == (70, 7)


def test_overdraft_is_kept_never_auto_repaid():
    b = bal([usage("u", 0, 40), grant("g", "A", 100, 1), usage("v", 2, 10)])
    assert (b.overdraft_nanos, b.consumed_nanos, b.remaining_nanos) == (40, 10, 90)
    assert (b.available_nanos, b.usage_cost_nanos) == (50, 50)


def test_unpriced_usage_counts_tokens_not_money():
    b = bal([grant("g", "A", 100, 0), usage("u", 1, None, tokens=40)])
    assert (b.unpriced_events, b.input_tokens, b.output_tokens, b.consumed_nanos) == (1, 40, 20, 0)


def test_grant_id_reuse_is_reported_and_ignored():
    r = replay_detailed([grant("g1", "A", 100, 0), grant("g2", "A", 50, 1)])
    assert r.balances["e1"].issued_nanos == 100
    assert [x.code for x in r.reports] == ["grant_id_reused"]


# ------------------------------------------------------------ corrections
def test_negative_correction_reduces_overdraft_then_refunds_reverse_draw_order():
    events = [grant("g1", "SOON", 50, 0, 100), grant("g2", "NEVER", 50, 0),
              usage("u", 1, 130),  # SOON 50, NEVER 50, overdraft 30
              usage("c", 2, -100, corrects="u")]
    r = replay_detailed(events, at(50))
    assert kinds(r)[-3:] == [("overdraft_refund", None, 30), ("refund", "NEVER", 50),
                             ("refund", "SOON", 20)]
    b = r.balances["e1"]
    assert (b.overdraft_nanos, b.consumed_nanos, b.remaining_nanos) == (0, 30, 70)
    assert b.conserved()


def test_refund_never_exceeds_consumed_rest_is_unapplied():
    events = [grant("g1", "A", 50, 0, 3), usage("u", 1, 20), grant("g2", "B", 50, 2),
              usage("v", 2, 10),  # A (expires at 3) 30, B untouched
              usage("c", 4, -100, corrects="u")]  # A expired: only B's 0 consumed
    r = replay_detailed(events)
    b = r.balances["e1"]
    assert (b.expired_nanos, b.refund_unapplied_nanos, b.consumed_nanos) == (20, 100, 30)
    assert kinds(r)[-1] == ("refund_unapplied", None, 100)
    assert b.conserved()


def test_positive_correction_draws_like_usage_and_tokens_may_be_negative():
    b = bal([grant("g", "A", 100, 0), usage("u", 1, 10, tokens=20),
             usage("c", 2, 5, tokens=-6, corrects="u")])
    assert (b.consumed_nanos, b.input_tokens) == (15, 14)


def test_negative_values_only_on_corrections():
    raw = event_to_dict(usage("c", 1, -5, corrects="u"))
    assert event_from_dict(raw).cost_nanos == -5
    raw.pop("corrects_event_id")
    with pytest.raises(EventError):
        event_from_dict(raw)
    with pytest.raises(EventError):
        replay([usage("c", 1, -5)])


# ------------------------------------------------------------------ alerts
def test_utilization_alerts_fire_once_and_rearm_after_new_grant():
    events = [grant("g", "A", 100, 0), usage("u1", 1, 50), usage("u2", 2, 10),
              usage("u3", 3, 25), grant("g2", "B", 100, 4), usage("u4", 5, 20),
              usage("u5", 6, 5), usage("u6", 7, 120)]
    r = replay_detailed(events)
    got = [(a.kind, a.threshold_pct, a.cause_event_id) for a in r.alerts["e1"]]
    assert got == [("utilization", 50, "u1"), ("utilization", 80, "u3"),
                   # B brings 85/200 under 50 %: re-armed; 105/200 crosses again
                   ("utilization", 50, "u4"),
                   ("utilization", 80, "u6"), ("utilization", 100, "u6"),
                   ("overdraft", None, "u6")]


def test_first_overdraft_alerts_once():
    r = replay_detailed([usage("u1", 0, 5), usage("u2", 1, 5)])
    assert [(a.kind, a.cause_event_id) for a in r.alerts["e1"]] == [("overdraft", "u1")]


# ----------------------------------------------------------------- postings
def test_postings_are_a_verifiable_chain_with_available_after():
    events = [grant("g", "A", 100, 0, 10), usage("u", 1, 130), grant("g2", "B", 10, 2)]
    r = replay_detailed(events)
    ps = r.postings["e1"]
    assert [(p.seq, p.kind, p.available_after_nanos) for p in ps] == [
        (1, "issue", 100), (2, "consume", 0), (3, "overdraft", -30), (4, "issue", -20)]
    assert ps[0].prev_hash == GENESIS_HASH
    assert verify_chain(ps) == (4, ps[-1].hash)
    assert all(p.amount_nanos > 0 for p in ps)


def test_an_event_that_would_take_a_total_past_64_bits_is_ignored_with_a_report():
    """Every balance counter is an Avro long and a ClickHouse Int64: before
    this rule the tenth grant of 10**18 nanos raised OverflowError when the
    balance was encoded, failing its batch at every retry."""
    from compstream.domain.ledger import COUNTER_MAX, OVERFLOW

    grants = [grant(f"g{i}", f"G{i}", 10**18, i) for i in range(10)]
    result = replay_detailed(grants)
    b = result.balances["e1"]
    assert (b.issued_nanos, b.remaining_nanos) == (9 * 10**18, 9 * 10**18)
    assert [(r.event_id, r.code) for r in result.reports] == [("g9", OVERFLOW)]
    # usage: its cost (consumed + overdraft) and each token total
    spend = [usage(f"u{i}", 20 + i, 10**18) for i in range(12)]
    b = replay_detailed(grants + spend).balances["e1"]
    assert b.consumed_nanos + b.overdraft_nanos == b.usage_cost_nanos == 9 * 10**18 <= COUNTER_MAX
    assert b.consumed_nanos == 9 * 10**18 and b.overdraft_nanos == 0
    big = [usage(f"t{i}", 40 + i, 1, tokens=2**62) for i in range(3)]
    result = replay_detailed([grant("g", "A", 100, 0)] + big)
    assert result.balances["e1"].input_tokens == 2**62 and result.balances["e1"].consumed_nanos == 1
    assert [(r.event_id, r.code) for r in result.reports] == [("t1", OVERFLOW), ("t2", OVERFLOW)]
    for value in replay_detailed(grants + spend + big).balances["e1"].to_dict().values():
        assert -COUNTER_MAX <= value <= COUNTER_MAX
