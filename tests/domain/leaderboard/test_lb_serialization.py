import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lb_support import assign, at, privacy, usage

from compstream.domain.leaderboard import (
    CandidateMessage,
    LeaderboardConfig,
    LeaderboardError,
    MergeState,
    PartitionState,
    PartitionWindow,
    Totals,
    WatermarkMessage,
    WindowBoards,
    message_from_dict,
)
from compstream.domain.leaderboard.privacy import PrivacyTimeline
from compstream.domain.leaderboard.teams import TeamTimeline

CFG = LeaderboardConfig(k=3, lateness=timedelta(hours=6), min_team_size=1)


def via_json(d):
    return json.loads(json.dumps(d))


def busy_state():
    state = PartitionState(2, CFG)
    for e in ["a", "b"]:
        state.apply_hr(assign(e, "t", at(0, 0)))
    state.apply_hr(privacy("b", True, at(1, 0)))
    for d in range(3):
        state.apply_usage(usage("a", at(d), inp=d + 1, cost=None if d == 1 else 5, cache_read=2))
        state.apply_usage(usage("b", at(d), inp=4, out=1, cost=7))
        state.apply_usage(usage("c", at(d), inp=9))
    return state


def test_partition_state_round_trips_and_behaves_identically():
    original = busy_state()
    restored = PartitionState.from_dict(via_json(original.to_dict()), CFG)
    assert restored.to_dict() == original.to_dict()
    nxt = usage("a", at(2, 13), inp=100)
    original.apply_usage(nxt)
    restored.apply_usage(nxt)
    assert [m.to_dict() for m in restored.drain()] == [m.to_dict() for m in original.drain()]
    assert [m.to_dict() for m in restored.advance_watermark(at(2, 6))] == [
        m.to_dict() for m in original.advance_watermark(at(2, 6))
    ]


def test_messages_round_trip_and_decode_by_type():
    state = busy_state()
    msgs = state.drain() + state.advance_watermark(at(1, 6))
    assert any(isinstance(m, WatermarkMessage) for m in msgs)
    for m in msgs:
        assert message_from_dict(via_json(m.to_dict())) == m
    assert isinstance(msgs[0], CandidateMessage) and msgs[0].teams


def test_merge_state_and_snapshots_round_trip():
    state = busy_state()
    merge = MergeState(CFG)
    for m in state.drain() + state.advance_watermark(at(1, 6)):
        merge.apply_message(m)
    snaps = merge.close(at(1, 6))
    assert snaps
    for snap in snaps:
        assert WindowBoards.from_dict(via_json(snap.to_dict())) == snap
    restored = MergeState.from_dict(via_json(merge.to_dict()), CFG)
    assert restored.to_dict() == merge.to_dict()
    assert restored.boards("all") == merge.boards("all")
    json.dumps(merge.boards("all").to_public_dict())


def test_timelines_and_windows_round_trip():
    tl = TeamTimeline("a")
    tl.apply(assign("a", "t1", at(0)))
    tl.apply(assign("a", "t2", at(3)))
    assert TeamTimeline.from_dict(via_json(tl.to_dict())).to_dict() == tl.to_dict()
    assert TeamTimeline.from_dict(tl.to_dict()).team_at(at(4)) == "t2"
    pt = PrivacyTimeline("a")
    pt.apply(privacy("a", True, at(1)))
    assert PrivacyTimeline.from_dict(via_json(pt.to_dict())).opted_out_at(at(2))
    pw = busy_state().windows["all"]
    assert PartitionWindow.from_dict(via_json(pw.to_dict())) == pw


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {"type": "leaderboard_candidates"},
        {"type": "leaderboard_watermark", "partition": 0, "watermark": "yesterday"},
        {"type": "leaderboard_watermark", "partition": -1, "watermark": "2026-11-27T00:00:00Z"},
        {"type": "nope"},
    ],
)
def test_malformed_messages_raise(raw):
    with pytest.raises(LeaderboardError):
        message_from_dict(raw)


def test_malformed_candidate_fields_raise():
    good = busy_state().drain()[0].to_dict()
    for field, bad in [("version", 0), ("k", True), ("eligible", {"bogus": 1}), ("engineers", {}),
                       ("window_key", "day:2026-99-01"), ("final", "yes")]:
        raw = dict(good, **{field: bad})
        with pytest.raises(LeaderboardError):
            msg = CandidateMessage.from_dict(raw)
            MergeState(CFG).apply(msg)  # window key is checked when applied


def test_malformed_totals_and_config_raise():
    with pytest.raises(LeaderboardError):
        Totals.from_dict({"input_tokens": 1.5})
    for kwargs in [{"k": 0}, {"lateness": timedelta(seconds=-1)}, {"min_team_size": 0}, {"kinds": ()}]:
        with pytest.raises(LeaderboardError):
            LeaderboardConfig(**kwargs)
    with pytest.raises(LeaderboardError):
        PartitionState(-1)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20))
def test_restoring_mid_stream_changes_nothing(cut):
    events = [usage(e, at(d % 4, d), inp=d % 5 + 1) for d, e in enumerate("abcdeabcdeabcdeabcde")]
    events.insert(7, privacy("c", True, at(1, 0)))
    events.insert(3, assign("a", "t", at(0, 0)))

    def feed(state, evs):
        for ev in evs:
            state.apply_hr(ev) if not hasattr(ev, "occurred_at") else state.apply_usage(ev)

    straight = PartitionState(0, CFG)
    feed(straight, events)
    resumed = PartitionState(0, CFG)
    feed(resumed, events[:cut])
    resumed = PartitionState.from_dict(via_json(resumed.to_dict()), CFG)
    feed(resumed, events[cut:])
    assert resumed.to_dict() == straight.to_dict()
