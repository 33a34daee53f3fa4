"""Two-stage aggregation vs a brute-force model over all events.

Guarantee under test (see merge.py): with per-partition candidate bound k_p and
board size k_m, the merged engineer board is exact for ranks
1..min(k_m, k_p) — always, including ties — and the merge never publishes a rank
past that bound (flagging `exact_beyond=False` instead). Team boards are exact.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lb_support import assign, at, direct_board, partition_of, privacy, run_two_stage, usage

from compstream.domain.events import Usage
from compstream.domain.leaderboard import (
    LeaderboardConfig,
    MergeState,
    Metric,
    PartitionState,
    Scope,
    merge_boards,
    windows_for,
)
from compstream.domain.leaderboard.boards import top_n
from compstream.domain.leaderboard.totals import Totals

ENGINEERS = [f"e{i:02d}" for i in range(14)]
TEAMS = ["t-a", "t-b", "t-c"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

when = st.builds(lambda d, h: at(d, h), st.integers(0, 9), st.integers(0, 23))
usages = st.lists(
    st.builds(
        lambda e, w, i, o, c: usage(e, w, inp=i, out=o, cost=c),
        st.sampled_from(ENGINEERS), when, st.integers(0, 6), st.integers(0, 3),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    max_size=60,
)
team_events = st.lists(
    st.builds(lambda e, t, w: assign(e, t, w), st.sampled_from(ENGINEERS), st.sampled_from(TEAMS), when),
    max_size=14,
)
privacy_events = st.lists(
    st.builds(lambda e, o, w: privacy(e, o, w), st.sampled_from(ENGINEERS), st.booleans(), when),
    max_size=5,
)


def window_keys(us):
    keys = {w.key for u in us for w in windows_for(u.occurred_at)}
    return sorted(keys) or ["all"]


def rows(merge, key, scope, metric):
    return [(e.id, e.value) for e in merge.boards(key).board(scope, metric).entries]


@SETTINGS
@given(usages, team_events, privacy_events, st.integers(1, 4), st.integers(1, 6), st.integers(1, 5))
def test_merged_boards_equal_direct_boards_when_k_covers(us, teams, privs, partitions, k, min_team):
    hr = teams + privs
    config = LeaderboardConfig(k=k, min_team_size=min_team)
    merge = run_two_stage(hr + us, config, partitions)  # HR first: see teams.py
    for key in window_keys(us):
        for scope in (Scope.ENGINEER, Scope.TEAM):
            for metric in (Metric.TOKENS, Metric.SPEND):
                assert rows(merge, key, scope, metric) == direct_board(us, hr, key, scope, metric, k, min_team)
                assert merge.boards(key).board(scope, metric).exact_beyond


@SETTINGS
@given(usages, st.integers(1, 4), st.integers(1, 4), st.integers(1, 8))
def test_small_partition_k_gives_an_exact_prefix_and_says_so(us, partitions, k_part, k_board):
    states = [PartitionState(p, LeaderboardConfig(k=k_part)) for p in range(partitions)]
    for u in us:
        states[partition_of(u.engineer_id, partitions)].apply_usage(u)
    msgs = [m for st_ in states for m in st_.drain()]
    board_config = LeaderboardConfig(k=k_board)
    for key in window_keys(us):
        for metric in (Metric.TOKENS, Metric.SPEND):
            got = merge_boards(key, [m for m in msgs if m.window_key == key], board_config)
            board = got.board(Scope.ENGINEER, metric)
            direct = direct_board(us, [], key, Scope.ENGINEER, metric, 10**6)
            entries = [(e.id, e.value) for e in board.entries]
            assert entries == direct[: len(entries)]  # never a wrong rank
            assert len(entries) >= min(k_part, k_board, len(direct))  # the guaranteed prefix
            if len(entries) < min(k_board, len(direct)):
                assert not board.exact_beyond  # cut short by the bound, and flagged


def test_without_the_bound_a_naive_merge_would_skip_an_engineer():
    # k=1 per partition: p0 holds a=10 and b=9, p1 holds c=1. The true top-2 is
    # [a, b], but b never leaves p0, so ranking the candidates naively gives
    # [a, c]. The merge publishes only the exact rank 1 and flags it.
    config_p = LeaderboardConfig(k=1)
    p0, p1 = PartitionState(0, config_p), PartitionState(1, config_p)
    p0.apply_usage(usage("a", at(0), inp=10))
    p0.apply_usage(usage("b", at(0), inp=9))
    p1.apply_usage(usage("c", at(0), inp=1))
    msgs = [m for m in p0.drain() + p1.drain() if m.window_key == "day:2026-11-02"]
    candidates = {e.engineer_id: e.totals for m in msgs for e in m.engineers}
    naive = [i for i, _ in top_n(candidates.items(), Metric.TOKENS, 2)]
    assert naive == ["a", "c"]  # wrong: b (9) outranks c (1)
    board = merge_boards("day:2026-11-02", msgs, LeaderboardConfig(k=2)).board(Scope.ENGINEER, Metric.TOKENS)
    assert board.ids() == ["a"] and not board.exact_beyond and board.eligible == 3


@SETTINGS
@given(usages, team_events, st.integers(1, 4))
def test_team_partial_sums_merged_equal_direct_team_totals(us, teams, partitions):
    config = LeaderboardConfig(k=100, min_team_size=1)
    merge = run_two_stage(teams + us, config, partitions)
    for key in window_keys(us):
        got = merge.boards(key).board(Scope.TEAM, Metric.TOKENS).entries
        direct = {}
        for u in us:
            if any(w.key == key for w in windows_for(u.occurred_at)):
                team = next(
                    (t.team_id for t in sorted(teams, key=lambda t: (t.effective_at, t.event_id), reverse=True)
                     if t.engineer_id == u.engineer_id and t.effective_at <= u.occurred_at),
                    None,
                )
                if team is not None:
                    tot = direct.setdefault(team, Totals())
                    direct[team] = tot + Totals.from_usage(u)
        assert {e.id: e.totals for e in got} == {t: v for t, v in direct.items() if v.tokens > 0}


@SETTINGS
@given(usages, privacy_events, st.integers(1, 4), st.integers(1, 5), st.randoms(use_true_random=False))
def test_duplicate_and_replayed_candidate_messages_do_not_change_the_result(us, privs, partitions, k, rnd):
    config = LeaderboardConfig(k=k, min_team_size=1)
    states = [PartitionState(p, config) for p in range(partitions)]
    history = []  # every message ever emitted, draining after each event
    for ev in privs + us:
        st_ = states[partition_of(ev.engineer_id, partitions)]
        st_.apply_usage(ev) if isinstance(ev, Usage) else st_.apply_hr(ev)
        history += st_.drain()
    clean = MergeState(config)
    for m in history:
        clean.apply(m)
    # Redeliver: every message 1-3 times, in an arbitrary order (old versions
    # arriving after new ones, as after a consumer rewind).
    noisy_stream = [m for m in history for _ in range(rnd.randint(1, 3))]
    rnd.shuffle(noisy_stream)
    noisy = MergeState(config)
    for m in noisy_stream:
        noisy.apply(m)
    for key in window_keys(us):
        assert noisy.boards(key).to_dict() == clean.boards(key).to_dict()
    assert noisy.to_dict() == clean.to_dict()


@SETTINGS
@given(usages, team_events, privacy_events, st.integers(1, 3), st.integers(1, 5), st.randoms(use_true_random=False))
def test_event_order_within_a_partition_does_not_change_final_boards(us, teams, privs, partitions, k, rnd):
    # Team assignments precede the usage they govern (documented contract);
    # usage and privacy changes may arrive in any order.
    config = LeaderboardConfig(k=k, min_team_size=2)
    watermark = at(30)

    def final_boards(events):
        states = [PartitionState(p, config) for p in range(partitions)]
        for ev in events:
            st_ = states[partition_of(ev.engineer_id, partitions)]
            st_.apply_usage(ev) if isinstance(ev, Usage) else st_.apply_hr(ev)
        merge = MergeState(config)
        for st_ in states:
            for m in st_.drain() + st_.advance_watermark(watermark):
                merge.apply_message(m)
        closed = merge.close(merge.safe_watermark(range(partitions)))
        # Every dated window is final by now; all-time stays open.
        assert {s.window_key for s in closed} | {"all"} >= set(window_keys(us))
        return {key: merge.boards(key).to_dict()["boards"] for key in window_keys(us)}

    base = final_boards(teams + privs + us)
    shuffled_teams = teams[:]
    rnd.shuffle(shuffled_teams)
    rest = privs + us
    rnd.shuffle(rest)
    assert final_boards(shuffled_teams + rest) == base
