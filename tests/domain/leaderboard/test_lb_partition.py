from lb_support import assign, at, board_rows, usage

from compstream.domain.leaderboard import LeaderboardConfig, MergeState, Metric, PartitionState, Scope

CFG = LeaderboardConfig(k=2, min_team_size=1)
DAY0 = "day:2026-11-02"


def test_candidate_lists_are_bounded_by_k_per_metric():
    state = PartitionState(0, CFG)
    for i, e in enumerate("abcdef"):
        # tokens favour a, b; spend favours f, e: the union has 4 entries.
        state.apply_usage(usage(e, at(0), inp=10 - i, cost=i + 1))
    msg = next(m for m in state.drain() if m.window_key == DAY0)
    assert [e.engineer_id for e in msg.engineers] == ["a", "b", "e", "f"]
    assert msg.eligible == {Metric.TOKENS: 6, Metric.SPEND: 6}
    assert msg.truncated(Metric.TOKENS)


def test_resending_all_windows_after_restart_is_harmless():
    state = PartitionState(0, CFG)
    merge = MergeState(CFG)
    state.apply_usage(usage("a", at(0), inp=5))
    for m in state.drain():
        merge.apply(m)
    before = merge.to_dict()
    resent = state.all_messages()
    assert {m.window_key for m in resent} == set(state.windows)
    assert not any(merge.apply(m) for m in resent)
    assert merge.to_dict() == before


def test_late_team_assignment_does_not_reattribute_counted_usage():
    # Documented limit (teams.py): membership is looked up when usage is applied.
    state = PartitionState(0, CFG)
    state.apply_usage(usage("a", at(0, 10), inp=5))
    state.apply_hr(assign("a", "t", at(0, 0)))  # arrives late, effective earlier
    state.apply_usage(usage("a", at(0, 11), inp=7))
    merge = MergeState(CFG)
    for m in state.drain():
        merge.apply(m)
    assert board_rows(merge, DAY0, Scope.TEAM, Metric.TOKENS) == [("t", 7)]
    assert board_rows(merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("a", 12)]


def test_versions_grow_with_every_change():
    state = PartitionState(0, CFG)
    state.apply_usage(usage("a", at(0)))
    v1 = {m.window_key: m.version for m in state.drain()}
    state.apply_usage(usage("a", at(0)))
    v2 = {m.window_key: m.version for m in state.drain()}
    assert all(v2[k] > v1[k] for k in v1)
