from datetime import timedelta

import pytest
from lb_support import at, board_rows, usage

from compstream.domain.leaderboard import (
    CandidateMessage,
    LeaderboardConfig,
    LeaderboardError,
    MergeState,
    Metric,
    PartitionState,
    Scope,
    WatermarkMessage,
)

CFG = LeaderboardConfig(k=10, lateness=timedelta(hours=6), min_team_size=1)
DAY0 = "day:2026-11-02"  # ends 2026-11-03T00:00, closes at 06:00


def pipeline(partitions=1):
    return [PartitionState(p, CFG) for p in range(partitions)], MergeState(CFG)


def ship(messages, merge):
    for m in messages:
        merge.apply_message(m)


def test_late_usage_within_lateness_updates_its_window():
    (state,), merge = pipeline()
    state.apply_usage(usage("a", at(0), inp=5))
    ship(state.drain(), merge)
    ship(state.advance_watermark(at(1, 5)), merge)  # 05:00 next day: day 0 still open
    result = state.apply_usage(usage("a", at(0, 23), inp=7))
    assert DAY0 in result.counted and result.too_late == ()
    ship(state.drain(), merge)
    assert board_rows(merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("a", 12)]


def test_usage_after_close_is_a_late_adjustment_of_that_window_only():
    (state,), _ = pipeline()
    state.apply_usage(usage("a", at(0)))
    state.advance_watermark(at(1, 6))
    result = state.apply_usage(usage("a", at(0, 23)))
    assert result.late == (DAY0,) and result.too_late == ()
    assert set(result.counted) == {"week:2026-W45", "month:2026-11", "all"}
    assert DAY0 not in state.windows and DAY0 in state.closed  # not re-opened
    assert state.closed[DAY0].contributions["a"][""].events == 2


def test_usage_for_a_window_closed_longer_than_retention_is_refused():
    config = LeaderboardConfig(k=10, lateness=timedelta(hours=6), retention=timedelta(days=2))
    state = PartitionState(0, config)
    state.apply_usage(usage("a", at(0)))
    state.advance_watermark(at(3, 5, 59))  # DAY0 closed 1 d 23:59 ago: still retained
    assert state.apply_usage(usage("a", at(0, 22))).late == (DAY0,)
    state.advance_watermark(at(3, 6))  # closed for exactly the retention: dropped
    assert DAY0 not in state.closed
    result = state.apply_usage(usage("a", at(0, 23)))
    assert result.too_late == (DAY0,) and result.late == ()
    assert DAY0 not in state.closed and DAY0 not in state.windows


def test_watermark_closes_windows_emits_finals_then_watermark_and_drops_state():
    (state,), _ = pipeline()
    state.apply_usage(usage("a", at(0)))
    state.apply_usage(usage("a", at(1)))
    before = {m.window_key: m.version for m in state.drain()}
    out = state.advance_watermark(at(1, 6))
    assert [type(m) for m in out] == [CandidateMessage, WatermarkMessage]
    final = out[0]
    assert final.window_key == DAY0 and final.final and final.version > before[DAY0]
    assert out[-1] == WatermarkMessage(0, at(1, 6))
    assert set(state.windows) == {"day:2026-11-03", "week:2026-W45", "month:2026-11", "all"}
    assert state.advance_watermark(at(1, 6)) == []  # no advance, nothing to send
    assert state.advance_watermark(at(0)) == []  # never backwards
    assert state.watermark == at(1, 6)


def test_merge_closes_at_watermark_with_a_final_snapshot():
    states, merge = pipeline(2)
    states[0].apply_usage(usage("a", at(0), inp=3))
    states[1].apply_usage(usage("b", at(0), inp=4))
    for st in states:
        ship(st.drain(), merge)
    assert merge.close(at(1, 5, 59)) == []
    snaps = merge.close(at(1, 6))
    assert [s.window_key for s in snaps] == [DAY0]
    snap = snaps[0]
    assert snap.final and snap.closed_at == at(1, 6)
    assert snap.board(Scope.ENGINEER, Metric.TOKENS).ids() == ["b", "a"]
    assert merge.boards(DAY0) is snap
    assert DAY0 not in merge.open_windows()


def test_closed_windows_are_final_at_the_merge():
    (state,), merge = pipeline()
    state.apply_usage(usage("a", at(0), inp=3))
    ship(state.drain(), merge)
    merge.close(at(1, 6))
    # A straggler (e.g. a replica that missed the close) cannot change it.
    other = PartitionState(1, CFG)
    other.apply_usage(usage("z", at(0), inp=1000))
    msgs = other.drain()
    assert not any(merge.apply(m) for m in msgs if m.window_key == DAY0)
    assert board_rows(merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("a", 3)]


def test_closed_boards_are_dropped_after_retention():
    config = LeaderboardConfig(k=10, lateness=timedelta(hours=6), retention=timedelta(days=2))
    state, merge = PartitionState(0, config), MergeState(config)
    state.apply_usage(usage("a", at(0)))
    ship(state.drain(), merge)
    merge.close(at(1, 6))
    assert DAY0 in merge.closed
    merge.close(at(3, 5))
    assert DAY0 in merge.closed
    merge.close(at(3, 6))
    assert DAY0 not in merge.closed
    assert merge.boards(DAY0).board(Scope.ENGINEER, Metric.TOKENS).entries == ()


def test_safe_watermark_waits_for_every_partition():
    states, merge = pipeline(2)
    ship(states[0].advance_watermark(at(5)), merge)
    assert merge.safe_watermark([0, 1]) is None
    ship(states[1].advance_watermark(at(3)), merge)
    assert merge.safe_watermark([0, 1]) == at(3)
    assert not merge.apply_watermark(WatermarkMessage(1, at(2)))  # regressions ignored
    assert merge.safe_watermark([0, 1]) == at(3)


def test_safe_watermark_closes_only_after_all_finals_arrived():
    states, merge = pipeline(2)
    states[0].apply_usage(usage("a", at(0), inp=3))
    states[1].apply_usage(usage("b", at(0), inp=4))
    ship(states[0].advance_watermark(at(1, 6)), merge)  # p1 has sent nothing yet
    assert merge.safe_watermark([0, 1]) is None
    ship(states[1].advance_watermark(at(1, 6)), merge)
    snaps = merge.close(merge.safe_watermark([0, 1]))
    assert snaps[0].board(Scope.ENGINEER, Metric.TOKENS).ids() == ["b", "a"]
    assert snaps[0].versions.keys() == {0, 1}


def test_all_time_and_open_windows_survive_a_far_watermark():
    (state,), merge = pipeline()
    state.apply_usage(usage("a", at(0)))
    ship(state.drain(), merge)
    ship(state.advance_watermark(at(400)), merge)
    assert set(state.windows) == {"all"}
    snaps = merge.close(at(400))
    assert {s.window_key for s in snaps} == {DAY0, "week:2026-W45", "month:2026-11"}
    assert merge.open_windows() == ["all"]


def test_naive_watermarks_are_refused():
    (state,), merge = pipeline()
    with pytest.raises(LeaderboardError):
        state.advance_watermark(at(0).replace(tzinfo=None))
    with pytest.raises(LeaderboardError):
        merge.close(at(0).replace(tzinfo=None))
