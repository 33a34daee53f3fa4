from lb_support import assign, at, board_rows, run_two_stage, usage

from compstream.domain.leaderboard import LeaderboardConfig, Metric, Scope

CFG = LeaderboardConfig(k=10, min_team_size=1)
DAY0 = "day:2026-11-02"


def test_equal_values_rank_by_engineer_id_across_partitions():
    events = [usage(e, at(0), inp=50) for e in ["zed", "amy", "mia", "bob"]] + [usage("top", at(0), inp=99)]
    for partitions in (1, 3):
        merge = run_two_stage(events, CFG, partitions)
        board = merge.boards(DAY0).board(Scope.ENGINEER, Metric.TOKENS)
        assert board.ids() == ["top", "amy", "bob", "mia", "zed"]
        assert [e.rank for e in board.entries] == [1, 2, 3, 4, 5]


def test_team_ties_rank_by_team_id():
    events = [assign("a", "t-b", at(0, 0)), assign("b", "t-a", at(0, 0)),
              usage("a", at(0), inp=5), usage("b", at(0), inp=5)]
    merge = run_two_stage(events, CFG, 2)
    assert board_rows(merge, DAY0, Scope.TEAM, Metric.TOKENS) == [("t-a", 5), ("t-b", 5)]


def test_tokens_are_input_plus_output_with_cache_reported_separately():
    events = [usage("a", at(0), inp=3, out=4, cache_read=1000, cache_write=7),
              usage("b", at(0), inp=8, out=0)]
    merge = run_two_stage(events, CFG, 1)
    board = merge.boards(DAY0).board(Scope.ENGINEER, Metric.TOKENS)
    assert [(e.id, e.value) for e in board.entries] == [("b", 8), ("a", 7)]
    assert board.entries[1].totals.cache_read_tokens == 1000
    assert board.entries[1].totals.cache_tokens == 1007


def test_spend_board_counts_priced_usage_and_flags_unpriced():
    events = [usage("a", at(0), cost=None, inp=100), usage("a", at(0), cost=30),
              usage("b", at(0), cost=40), usage("c", at(0), cost=None)]
    merge = run_two_stage(events, CFG, 2)
    board = merge.boards(DAY0).board(Scope.ENGINEER, Metric.SPEND)
    assert [(e.id, e.value) for e in board.entries] == [("b", 40), ("a", 30)]  # c: no priced spend
    assert board.entries[1].totals.unpriced_events == 1
    assert board.eligible == 2


def test_usage_before_any_team_assignment_has_no_team():
    events = [usage("a", at(0, 1)), assign("a", "t", at(0, 2)), usage("a", at(0, 3), inp=7)]
    merge = run_two_stage(events, CFG, 1)
    assert board_rows(merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("a", 17)]
    assert board_rows(merge, DAY0, Scope.TEAM, Metric.TOKENS) == [("t", 7)]


def test_usage_counts_for_the_team_at_event_time():
    events = [assign("a", "old", at(0, 0)), assign("a", "new", at(3, 0)),
              usage("a", at(1), inp=5), usage("a", at(4), inp=9)]
    merge = run_two_stage(events, CFG, 1)
    week = "week:2026-W45"
    assert board_rows(merge, week, Scope.TEAM, Metric.TOKENS) == [("new", 9), ("old", 5)]
    assert board_rows(merge, "day:2026-11-03", Scope.TEAM, Metric.TOKENS) == [("old", 5)]
