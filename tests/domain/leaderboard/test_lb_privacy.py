import pytest
from lb_support import assign, at, board_rows, privacy, run_two_stage, usage

from compstream.domain.leaderboard import (
    LeaderboardConfig,
    LeaderboardError,
    Metric,
    PartitionState,
    Pseudonymizer,
    Scope,
    team_visible,
    window_from_key,
)
from compstream.domain.leaderboard.privacy import PrivacyTimeline

CFG = LeaderboardConfig(k=10, min_team_size=1)
WEEK = "week:2026-W45"  # Mon 2026-11-02 .. Mon 2026-11-09


def engineer_ids(merge, key):
    return merge.boards(key).board(Scope.ENGINEER, Metric.TOKENS).ids()


def test_opt_out_is_effective_dated():
    # b opts out on day 3 (Thursday): visible on days before, hidden from then
    # on, and hidden from the week/month/all-time boards that cover day 3.
    events = [usage("a", at(d)) for d in range(5)] + [usage("b", at(d)) for d in range(5)]
    events.append(privacy("b", True, at(3, 0)))
    merge = run_two_stage(events, CFG, 2)
    assert engineer_ids(merge, "day:2026-11-04") == ["a", "b"]
    assert engineer_ids(merge, "day:2026-11-05") == ["a"]
    assert engineer_ids(merge, "day:2026-11-06") == ["a"]
    assert engineer_ids(merge, WEEK) == ["a"]
    assert engineer_ids(merge, "all") == ["a"]


def test_opting_back_in_restores_later_days_but_not_all_time():
    events = [usage("b", at(d)) for d in range(5)]
    events += [privacy("b", True, at(1, 0)), privacy("b", False, at(3, 0))]
    merge = run_two_stage(events, CFG, 1)
    assert engineer_ids(merge, "day:2026-11-02") == ["b"]
    assert engineer_ids(merge, "day:2026-11-03") == []
    assert engineer_ids(merge, "day:2026-11-04") == []
    assert engineer_ids(merge, "day:2026-11-05") == ["b"]
    assert engineer_ids(merge, WEEK) == []
    assert engineer_ids(merge, "all") == []


def test_future_dated_opt_out_hides_open_windows_that_reach_it():
    pt = PrivacyTimeline("b")
    pt.apply(privacy("b", True, at(20)))
    assert not pt.hidden_during(window_from_key("day:2026-11-02"))
    assert pt.hidden_during(window_from_key("month:2026-11"))


def test_opted_out_engineer_still_counts_for_the_team_and_frees_the_slot():
    config = LeaderboardConfig(k=2, min_team_size=1)
    events = [assign(e, "t", at(0, 0)) for e in "abc"]
    events += [usage("a", at(0), inp=100), usage("b", at(0), inp=50), usage("c", at(0), inp=10)]
    events.append(privacy("a", True, at(0, 0)))
    merge = run_two_stage(events, config, 1)
    assert engineer_ids(merge, "day:2026-11-02") == ["b", "c"]  # a hidden; c moves up within k
    assert board_rows(merge, "day:2026-11-02", Scope.TEAM, Metric.TOKENS) == [("t", 160)]


def test_privacy_change_re_emits_open_windows():
    state = PartitionState(0, CFG)
    state.apply_usage(usage("a", at(0)))
    first = {m.window_key: m for m in state.drain()}
    assert state.drain() == []
    assert state.apply_hr(privacy("a", True, at(0, 0)))
    second = {m.window_key: m for m in state.drain()}
    assert set(second) == set(first)
    for key, msg in second.items():
        assert msg.version > first[key].version
        assert msg.engineers == ()


def test_redelivered_hr_event_is_ignored():
    state = PartitionState(0, CFG)
    state.apply_usage(usage("a", at(0)))
    state.drain()
    ev = privacy("a", True, at(0, 0))
    assert state.apply_hr(ev)
    state.drain()
    assert not state.apply_hr(ev)
    assert state.drain() == []


def test_pseudonyms_are_stable_distinct_and_keyed():
    p = Pseudonymizer("s" * 32)
    assert p("alice") == Pseudonymizer("s" * 32)("alice")
    assert p("alice").startswith("anon-") and len(p("alice")) == len("anon-") + 12
    assert p("alice") != p("bob")
    assert p("alice") != Pseudonymizer("t" * 32)("alice")
    ids = [f"eng-{i}" for i in range(5000)]
    assert len({p(i) for i in ids}) == len(ids)
    assert Pseudonymizer("s" * 32, hex_chars=8)("alice") == p("alice")[: len("anon-") + 8]
    assert "s" * 16 not in repr(p)


@pytest.mark.parametrize("secret, hex_chars", [("short", 12), ("s" * 32, 7), ("s" * 32, 65), ("s" * 32, True)])
def test_pseudonymizer_refuses_weak_settings(secret, hex_chars):
    with pytest.raises(LeaderboardError):
        Pseudonymizer(secret, hex_chars)


def test_pseudonymous_publication_keeps_ranking_by_real_id():
    p = Pseudonymizer("k" * 32)
    events = [usage(e, at(0), inp=5) for e in ["amy", "bob", "cid"]]
    merge = run_two_stage(events, CFG, 2)
    boards = merge.boards("day:2026-11-02")
    public = boards.to_public_dict(p)
    eng = next(b for b in public["boards"] if b["scope"] == "engineer" and b["metric"] == "tokens")
    assert [e["id"] for e in eng["entries"]] == [p("amy"), p("bob"), p("cid")]
    assert "versions" not in public
    team_ids_untouched = boards.board(Scope.TEAM, Metric.TOKENS).to_public_dict(p)["entries"]
    assert team_ids_untouched == []


def _team_events(n_members, team="t", inp=10):
    events = []
    for i in range(n_members):
        events += [assign(f"{team}{i}", team, at(0, 0)), usage(f"{team}{i}", at(0), inp=inp)]
    return events


def test_small_teams_are_hidden_by_contributor_count():
    config = LeaderboardConfig(k=10)  # default min_team_size = 5
    assert config.min_team_size == 5
    events = _team_events(4, "small") + _team_events(5, "big")
    merge = run_two_stage(events, config, 3)
    rows = merge.boards("day:2026-11-02").board(Scope.TEAM, Metric.TOKENS).entries
    assert [(e.id, e.members) for e in rows] == [("big", 5)]


def test_headcount_without_usage_does_not_unhide_a_team():
    # Ten people assigned, but only one used compute: publishing the team total
    # would publish that person's usage, so the team stays hidden.
    config = LeaderboardConfig(k=10)
    events = [assign(f"m{i}", "t", at(0, 0)) for i in range(10)] + [usage("m0", at(0), inp=99)]
    events += [usage(f"m{i}", at(0), inp=0) for i in range(1, 10)]  # zero-activity events don't count
    merge = run_two_stage(events, config, 2)
    assert merge.boards("day:2026-11-02").board(Scope.TEAM, Metric.TOKENS).entries == ()


def test_team_visibility_threshold():
    assert not team_visible(4) and team_visible(5) and team_visible(2, min_team_size=2)
