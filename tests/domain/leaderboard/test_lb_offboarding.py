"""Offboarding ends ranking (domain/leaderboard/offboarding.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lb_support import assign, at, partition_of, usage

from compstream.domain.events import EngineerOffboarded
from compstream.domain.leaderboard import (
    LeaderboardConfig,
    LeaderboardError,
    MergeState,
    Metric,
    PartitionState,
    Scope,
    window_from_key,
)
from compstream.domain.leaderboard.offboarding import offboarding_hides

CFG = LeaderboardConfig(k=10, min_team_size=1, lateness=timedelta(hours=1))
WEEK1, WEEK2 = "week:2026-W45", "week:2026-W46"  # Mon 2026-11-02.., Mon 2026-11-09..


def offboard(engineer, when, event_id=None):
    return EngineerOffboarded(event_id or f"off-{engineer}-{when:%d%H%M}", engineer, when)


def run(events, partitions=1, watermark=None):
    """Both stages, the way the worker drives them: apply, advance, drain."""
    states = [PartitionState(p, CFG) for p in range(partitions)]
    merge = MergeState(CFG)
    for ev in events:
        st_ = states[partition_of(ev.engineer_id, partitions)]
        st_.apply_usage(ev) if ev.type == "usage" else st_.apply_hr(ev)
    for st_ in states:
        for msg in st_.drain():
            merge.apply(msg)
        if watermark is not None:
            for msg in st_.advance_watermark(watermark):
                merge.apply_message(msg)
            for msg in st_.drain():
                merge.apply(msg)
    return states, merge


def ids(merge, key, scope=Scope.ENGINEER, metric=Metric.TOKENS):
    return merge.boards(key).board(scope, metric).ids()


def test_rule_dated_windows_by_start_all_time_by_watermark():
    t = at(2, 15)  # Wednesday 15:00
    assert not offboarding_hides(None, window_from_key("day:2026-11-05"), None)
    assert not offboarding_hides(t, window_from_key("day:2026-11-04"), None)  # contains T
    assert offboarding_hides(t, window_from_key("day:2026-11-05"), None)
    assert not offboarding_hides(t, window_from_key(WEEK1), None)
    assert offboarding_hides(t, window_from_key(WEEK2), None)
    assert not offboarding_hides(t, window_from_key("month:2026-11"), None)
    assert offboarding_hides(t, window_from_key("month:2026-12"), None)
    all_time = window_from_key("all")
    assert not offboarding_hides(t, all_time, None)
    assert not offboarding_hides(t, all_time, t - timedelta(microseconds=1))
    assert offboarding_hides(t, all_time, t)
    # a window starting exactly at the offboarding is after it
    assert offboarding_hides(at(3, 0), window_from_key("day:2026-11-05"), None)


def test_offboarded_engineer_leaves_later_boards_but_keeps_earlier_ones():
    events = [usage(e, at(d), inp=100 if e == "b" else 10) for e in "ab" for d in range(10)]
    events.append(offboard("b", at(2, 15)))
    _, merge = run(events, partitions=2)
    assert ids(merge, "day:2026-11-04") == ["b", "a"]  # the offboarding day
    assert ids(merge, "day:2026-11-05") == ["a"]
    assert ids(merge, WEEK1) == ["b", "a"]
    assert ids(merge, WEEK2) == ["a"]
    assert ids(merge, "month:2026-11") == ["b", "a"]
    assert ids(merge, "all") == ["b", "a"]  # stream time has not reached the offboarding


def test_all_time_board_drops_the_engineer_when_the_watermark_passes_without_new_usage():
    events = [usage("a", at(0), inp=10), usage("b", at(0), inp=100), offboard("b", at(5))]
    states, merge = run(events, watermark=at(4))
    assert ids(merge, "all") == ["b", "a"]  # scheduled, not yet effective
    for msg in states[0].advance_watermark(at(5)):
        merge.apply_message(msg)
    sent = states[0].drain()
    assert [m.window_key for m in sent] == ["all"]  # re-sent with no usage arriving
    for msg in sent:
        merge.apply(msg)
    assert ids(merge, "all") == ["a"]


def test_offboarding_frees_the_slot_and_team_totals_keep_the_usage():
    config = LeaderboardConfig(k=1, min_team_size=1)
    state = PartitionState(0, config)
    for e in "ab":
        state.apply_hr(assign(e, "t", at(0, 0)))
    state.apply_usage(usage("a", at(8), inp=100))
    state.apply_usage(usage("b", at(8), inp=50))
    state.apply_hr(offboard("a", at(6)))  # the Sunday before WEEK2
    msg = state.candidate_message(WEEK2)
    assert [e.engineer_id for e in msg.engineers] == ["b"]  # a hidden before the k cut
    (team,) = msg.teams
    assert team.totals.tokens == 150 and team.members == 2


def test_earliest_offboarding_counts_and_redelivery_is_a_no_op():
    state = PartitionState(0, CFG)
    state.apply_usage(usage("b", at(8)))
    assert state.apply_hr(offboard("b", at(9), "o1")) is True
    state.drain()
    assert state.apply_hr(offboard("b", at(9), "o1")) is False
    assert state.apply_hr(offboard("b", at(12), "o2")) is False
    assert state.drain() == []
    assert [e.engineer_id for e in state.candidate_message(WEEK2).engineers] == ["b"]  # WEEK2 holds at(9)
    assert state.apply_hr(offboard("b", at(6), "o0")) is True  # earlier: takes over, boards re-sent
    assert state.offboarded["b"] == at(6)
    assert {m.window_key for m in state.drain()} >= {WEEK2, "day:2026-11-10"}
    assert [e.engineer_id for e in state.candidate_message(WEEK2).engineers] == []


def test_state_round_trip_keeps_offboardings_and_reads_older_states():
    state = PartitionState(0, CFG)
    state.apply_usage(usage("a", at(1)))
    state.apply_hr(offboard("a", at(3)))
    state.advance_watermark(at(2))
    raw = state.to_dict()
    back = PartitionState.from_dict(raw, CFG)
    assert back.offboarded == {"a": at(3)} and back.to_dict() == raw
    # the pending all-time re-send survives the restore
    back.drain()
    back.advance_watermark(at(3))
    assert "all" in {m.window_key for m in back.drain()}
    older = {k: v for k, v in raw.items() if k != "offboarded"}
    assert PartitionState.from_dict(older, CFG).offboarded == {}
    with pytest.raises(LeaderboardError):
        PartitionState.from_dict({**raw, "offboarded": [{"engineer_id": "a"}]}, CFG)


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 20), st.integers(1, 50)), min_size=1, max_size=30),
    offs=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 20), st.integers(0, 23)), max_size=4),
    watermark_day=st.integers(0, 25),
    order=st.randoms(use_true_random=False),
)
def test_boards_follow_the_rule_in_any_delivery_order(days, offs, watermark_day, order):
    events = [usage(e, at(d), inp=n) for e, d, n in days]
    events += [offboard(e, at(d, h)) for e, d, h in offs]
    shuffled = list(events)
    order.shuffle(shuffled)
    _, merge = run(shuffled, partitions=2, watermark=at(watermark_day, 0))
    earliest = {}
    for e, d, h in offs:
        earliest[e] = min(earliest.get(e, at(d, h)), at(d, h))
    wm = at(watermark_day, 0)
    for key in ("all", WEEK1, WEEK2, "week:2026-W47", "month:2026-11"):
        window = window_from_key(key)
        expected_sums = {}
        for e, d, n in days:
            if window.contains(at(d)) and not offboarding_hides(earliest.get(e), window, wm):
                expected_sums[e] = expected_sums.get(e, 0) + n
        expected = [e for e, _ in sorted(expected_sums.items(), key=lambda kv: (-kv[1], kv[0]))]
        assert ids(merge, key) == expected, key
