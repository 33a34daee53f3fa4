"""Late usage for a closed window is a late adjustment (partition_state.py,
merge.py): counted in that window, re-ranked, published as a new revision.

Properties, against the brute-force model of lb_support over *all* usage:
- the final boards of every window after all usage (late included, within
  retention) equal a from-scratch ranking, whatever the arrival order, the
  batch cuts, the number of partitions and any re-sent messages or restarts;
- each window's revision = the number of batches that brought it usage after
  the merge had closed it (computed here from event times alone);
- a re-sent message or a restart's re-send never makes a revision.
"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lb_support import assign, at, board_rows, direct_board, partition_of, privacy, usage

from compstream.domain.events import Usage
from compstream.domain.leaderboard import (
    LeaderboardConfig,
    MergeState,
    Metric,
    PartitionState,
    Scope,
    window_from_key,
    windows_for,
)

ENGINEERS = [f"e{i:02d}" for i in range(9)]
TEAMS = ["t-a", "t-b"]
LATENESS = timedelta(hours=6)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY0 = "day:2026-11-02"

when = st.builds(lambda d, h: at(d, h), st.integers(0, 12), st.integers(0, 23))
usages = st.lists(
    st.builds(lambda e, w, i, o, c: usage(e, w, inp=i, out=o, cost=c),
              st.sampled_from(ENGINEERS), when, st.integers(1, 6), st.integers(0, 3),
              st.one_of(st.none(), st.integers(0, 6))),
    min_size=1, max_size=50,
)


def keys_of(us) -> list[str]:
    return sorted({w.key for u in us for w in windows_for(u.occurred_at)} - {"all"})


class Pipeline:
    """Partition states and a merge driven batch by batch like the worker:
    apply the batch, advance each fed partition's watermark to its stream
    time - lateness, ship finals + watermark + drained messages, then
    close(safe) and revise()."""

    def __init__(self, config: LeaderboardConfig, partitions: int):
        self.config, self.partitions = config, partitions
        self.states = [PartitionState(p, config) for p in range(partitions)]
        self.stream = {}
        self.merge = MergeState(config)
        self.shipped = []
        self.revisions = 0

    def batch(self, events) -> None:
        fed = set()
        for ev in events:
            p = partition_of(ev.engineer_id, self.partitions)
            fed.add(p)
            if not isinstance(ev, Usage):
                self.states[p].apply_hr(ev)
            else:
                self.states[p].apply_usage(ev)
                self.stream[p] = max(self.stream.get(p, ev.occurred_at), ev.occurred_at)
        msgs = []
        for p in sorted(fed):
            if p in self.stream:
                msgs += self.states[p].advance_watermark(self.stream[p] - self.config.lateness)
            msgs += self.states[p].drain()
        self.ship(msgs)

    def ship(self, msgs) -> None:
        for m in msgs:
            self.merge.apply_message(m)
        self.shipped += msgs
        safe = self.merge.safe_watermark(range(self.partitions))
        if safe is not None:
            self.merge.close(safe)
        self.revisions += len(self.merge.revise())

    def restart(self, partition: int) -> None:
        """A restored partition re-sends every window with higher versions."""
        st_ = self.states[partition]
        st_ = self.states[partition] = PartitionState.from_dict(json.loads(json.dumps(st_.to_dict())), self.config)
        for pw in [*st_.windows.values(), *st_.closed.values()]:
            pw.version += 1
        self.ship(st_.all_messages())

    def finish(self, watermark) -> None:
        msgs = []
        for st_ in self.states:
            msgs += st_.advance_watermark(watermark) + st_.drain()
        self.ship(msgs)


def expected_revisions(batches, partitions: int, config: LeaderboardConfig) -> dict[str, int]:
    """From event times alone: a batch revises window W if it carries usage of
    W and, before it, every partition's watermark (max usage time so far -
    lateness) had passed W's close."""
    stream: dict[int, object] = {}
    out: dict[str, int] = {}
    for batch in batches:
        merge_wm = min(stream.values()) - config.lateness if len(stream) == partitions else None
        touched = {w.key for u in batch if not hasattr(u, "team_id") for w in windows_for(u.occurred_at)}
        for key in touched:
            if window_from_key(key).is_closed(merge_wm, config.lateness):
                out[key] = out.get(key, 0) + 1
        for u in batch:
            if not hasattr(u, "team_id"):
                p = partition_of(u.engineer_id, partitions)
                stream[p] = max(stream.get(p, u.occurred_at), u.occurred_at)
    return out


def cut(items, cuts):
    bounds = sorted({c % (len(items) + 1) for c in cuts}) + [len(items)]
    out, start = [], 0
    for b in bounds:
        if b > start:
            out.append(items[start:b])
            start = b
    return out


@SETTINGS
@given(usages, st.lists(st.builds(lambda e, t: assign(e, t, at(-1)), st.sampled_from(ENGINEERS),
                                  st.sampled_from(TEAMS)), max_size=9),
       st.integers(1, 3), st.randoms(use_true_random=False), st.lists(st.integers(0, 60), max_size=12),
       st.lists(st.integers(0, 60), max_size=4), st.lists(st.integers(0, 60), max_size=3))
def test_final_boards_after_late_usage_equal_a_from_scratch_ranking(us, teams, partitions, rnd, cuts,
                                                                    redeliver_at, restart_at):
    config = LeaderboardConfig(k=len(ENGINEERS), lateness=LATENESS, min_team_size=1,
                               retention=timedelta(days=365))
    arrival = us[:]
    rnd.shuffle(arrival)  # out of order by up to 12 days: much of it is late
    batches = [teams] + cut(arrival, cuts) if teams else cut(arrival, cuts)
    pipe = Pipeline(config, partitions)
    for i, batch in enumerate(batches):
        pipe.batch(batch)
        if i in redeliver_at:  # the candidates topic re-delivers everything so far
            before = pipe.revisions
            pipe.ship(list(pipe.shipped))
            assert pipe.revisions == before
        if i in restart_at:
            before = pipe.revisions
            pipe.restart(i % partitions)
            assert pipe.revisions == before
    expected = expected_revisions(batches, partitions, config)
    pipe.finish(at(40))
    assert pipe.revisions == sum(expected.values())
    for key in keys_of(us):
        boards = pipe.merge.boards(key)
        assert boards.final
        assert boards.revision == expected.get(key, 0), key
        assert boards.late_adjusted == (key in expected)
        for scope in Scope:
            for metric in Metric:
                want = direct_board(us, teams, key, scope, metric, config.k, min_team_size=1)
                assert board_rows(pipe.merge, key, scope, metric) == want, (key, scope, metric)


# -- examples ------------------------------------------------------------------

def test_late_usage_revises_a_final_board_and_says_so():
    config = LeaderboardConfig(k=10, lateness=LATENESS, min_team_size=1)
    pipe = Pipeline(config, 1)
    pipe.batch([usage("grace", at(0), inp=24), usage("ada", at(1, 12))])  # day 0 closes
    first = pipe.merge.boards(DAY0)
    assert first.final and first.revision == 0 and not first.late_adjusted
    pipe.batch([usage("barbara", at(0, 9), inp=1432)])
    second = pipe.merge.boards(DAY0)
    assert second.revision == 1 and second.late_adjusted and second.closed_at == first.closed_at
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("barbara", 1432), ("grace", 24)]
    pipe.batch([usage("grace", at(0, 10), inp=2000), usage("ada", at(0, 11), inp=1)])  # one batch, one revision
    assert pipe.merge.boards(DAY0).revision == 2
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS)[0] == ("grace", 2024)
    assert pipe.merge.boards(DAY0).to_public_dict()["late_adjusted"] is True


def test_late_usage_for_a_window_nobody_used_creates_revision_one():
    config = LeaderboardConfig(k=10, lateness=LATENESS)
    pipe = Pipeline(config, 1)
    pipe.batch([usage("ada", at(3))])
    assert DAY0 not in pipe.merge.closed
    pipe.batch([usage("ada", at(0), inp=5)])
    assert pipe.merge.boards(DAY0).revision == 1
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("ada", 5)]


def test_no_late_adjustment_past_retention_at_either_stage():
    config = LeaderboardConfig(k=10, lateness=LATENESS, retention=timedelta(days=2))
    pipe = Pipeline(config, 1)
    pipe.batch([usage("ada", at(0), inp=3), usage("ada", at(3, 12))])  # DAY0 closed 2 d ago: gone
    assert DAY0 not in pipe.merge.closed and DAY0 not in pipe.states[0].closed
    result = pipe.states[0].apply_usage(usage("ada", at(0), inp=100))
    assert result.too_late == (DAY0,)
    assert pipe.states[0].drain() and DAY0 not in pipe.merge.closed


def test_merge_ignores_a_final_for_a_window_closed_before_contributions_were_kept():
    config = LeaderboardConfig(k=10, lateness=LATENESS)
    pipe = Pipeline(config, 1)
    pipe.batch([usage("ada", at(0), inp=3), usage("ada", at(1, 12))])
    pipe.merge.closed_messages.clear()  # as restored from a state written before revisions
    pipe.batch([usage("bob", at(0), inp=9)])
    assert pipe.merge.boards(DAY0).revision == 0
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("ada", 3)]


def test_merge_state_round_trip_keeps_closed_contributions():
    config = LeaderboardConfig(k=10, lateness=LATENESS)
    pipe = Pipeline(config, 2)
    pipe.batch([usage("ada", at(0), inp=3), usage("bob", at(0), inp=2), usage("ada", at(1, 12)),
                usage("bob", at(1, 12))])
    restored = MergeState.from_dict(json.loads(json.dumps(pipe.merge.to_dict())), config)
    assert restored.to_dict() == pipe.merge.to_dict()
    pipe.merge = restored
    pipe.batch([usage("bob", at(0, 1), inp=5)])
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("bob", 7), ("ada", 3)]
    assert pipe.merge.boards(DAY0).revision == 1


def test_a_late_opt_out_revises_a_closed_board_and_a_restart_makes_no_other_revision():
    config = LeaderboardConfig(k=10, lateness=LATENESS)
    pipe = Pipeline(config, 1)
    pipe.batch([usage("ada", at(0), inp=5), usage("bob", at(0), inp=3), usage("bob", at(1, 12))])
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("ada", 5), ("bob", 3)]
    pipe.batch([privacy("ada", True, at(0, 1))])  # opted out during day 0, learnt late
    assert board_rows(pipe.merge, DAY0, Scope.ENGINEER, Metric.TOKENS) == [("bob", 3)]
    assert pipe.merge.boards(DAY0).revision == 1
    pipe.batch([privacy("bob", False, at(0, 2))])  # changes nobody shown: no revision
    pipe.restart(0)
    assert pipe.merge.boards(DAY0).revision == 1
