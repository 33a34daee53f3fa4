"""The partition window's derived caches against brute force.

PartitionWindow keeps per-engineer ranking values and per-team sums/members
beside `contributions` (see window_totals.py). These properties drive a
PartitionState (and the worker's PartitionStage restore path) through arbitrary
usage, HR, watermark moves, direct adds with negative deltas and JSON round
trips, and check after every step that
- the caches equal a recomputation from `contributions`, and
- every candidate message equals the one the straightforward pre-cache code
  (kept below as the oracle) computes: same objects, same serialized bytes.
"""

from __future__ import annotations

import heapq
import json
import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lb_support import assign, at, privacy, usage

from compstream.domain.leaderboard import LeaderboardConfig, PartitionState, PartitionWindow, window_from_key
from compstream.domain.leaderboard.boards import rank_order, top_n
from compstream.domain.leaderboard.messages import CandidateMessage, EngineerEntry, TeamPartial
from compstream.domain.leaderboard.totals import METRICS, Metric, Totals, sum_totals
from compstream.domain.leaderboard.window_totals import NO_TEAM

ENGINEERS = [f"e{i}" for i in range(9)]
TEAMS = ["t-a", "t-b", "t-c"]
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the oracle: the code before the caches, verbatim in substance ----------

def oracle_team_partials(pw: PartitionWindow) -> tuple[TeamPartial, ...]:
    sums: dict[str, Totals] = {}
    members: dict[str, int] = {}
    for by_team in pw.contributions.values():
        for team, totals in by_team.items():
            if team == NO_TEAM:
                continue
            sums[team] = sums.get(team, Totals()) + totals
            members[team] = members.get(team, 0) + (1 if totals.is_activity() else 0)
    return tuple(TeamPartial(t, sums[t], members[t]) for t in sorted(sums))


def oracle_top_n(items, metric, n):
    eligible = [(i, t) for (i, t) in items if t.value(metric) > 0]
    eligible.sort(key=lambda it: rank_order(it[1].value(metric), it[0]))
    return eligible[:n]


def oracle_message(state: PartitionState, key: str, final: bool = False) -> CandidateMessage:
    pw, window, k = state.windows.get(key) or state.closed[key], window_from_key(key), state.config.k
    totals = {e: sum_totals(by_team.values()) for e, by_team in pw.contributions.items()}
    visible = {e: t for e, t in totals.items() if not state.hidden(e, window)}
    chosen: dict[str, Totals] = {}
    eligible = {}
    for metric in METRICS:
        eligible[metric] = sum(1 for t in visible.values() if t.value(metric) > 0)
        chosen.update(oracle_top_n(visible.items(), metric, k))
    return CandidateMessage(
        partition=state.partition, window_key=key, version=pw.version, final=final, k=k,
        eligible=eligible, engineers=tuple(EngineerEntry(e, chosen[e]) for e in sorted(chosen)),
        teams=oracle_team_partials(pw), watermark=state.watermark,
    )


def as_bytes(msg) -> bytes:
    return json.dumps(msg.to_dict(), sort_keys=True).encode()


def check_window(pw: PartitionWindow) -> None:
    """Caches == brute force from contributions (reads the private caches on purpose)."""
    for e, by_team in pw.contributions.items():
        t = sum_totals(by_team.values())
        assert pw._values[e] == [t.value(Metric.TOKENS), t.value(Metric.SPEND)], e
    assert set(pw._values) == set(pw.contributions)
    expected = {p.team_id: [*p.totals.to_dict().values(), p.members] for p in oracle_team_partials(pw)}
    assert pw._teams == expected
    assert pw.team_partials() == oracle_team_partials(pw)


def check_state(state: PartitionState) -> None:
    for key, pw in state.windows.items():
        check_window(pw)
        assert pw.engineer_totals() == {e: sum_totals(b.values()) for e, b in pw.contributions.items()}
        got = state.candidate_message(key)
        want = oracle_message(state, key)
        assert got == want
        assert as_bytes(got) == as_bytes(want)


def round_trip(state: PartitionState) -> PartitionState:
    return PartitionState.from_dict(json.loads(json.dumps(state.to_dict())), state.config)


# -- operations ----------------------------------------------------------

when = st.builds(lambda d, h: at(d, h), st.integers(0, 9), st.integers(0, 23))
small = st.integers(-3, 6)  # negatives: corrections may take activity away again
ops = st.lists(
    st.one_of(
        st.tuples(st.just("usage"), st.sampled_from(ENGINEERS), when, st.integers(0, 6), st.integers(0, 3),
                  st.one_of(st.none(), st.integers(0, 6)), st.integers(0, 2)),
        st.tuples(st.just("delta"), st.sampled_from(ENGINEERS), st.sampled_from(TEAMS + [NO_TEAM]),
                  st.tuples(small, small, small, small, small, st.just(0), st.just(0))),
        st.tuples(st.just("cancel"), st.sampled_from(ENGINEERS)),
        st.tuples(st.just("team"), st.sampled_from(ENGINEERS), st.sampled_from(TEAMS), when),
        st.tuples(st.just("privacy"), st.sampled_from(ENGINEERS), st.booleans(), when),
        st.tuples(st.just("watermark"), when),
        st.tuples(st.just("round_trip")),
        st.tuples(st.just("drain")),
    ),
    max_size=50,
)


def step(state: PartitionState, op) -> PartitionState:
    kind = op[0]
    if kind == "usage":
        _, e, w, i, o, c, cr = op
        state.apply_usage(usage(e, w, inp=i, out=o, cost=c, cache_read=cr))
    elif kind == "delta" and state.windows:
        # What the worker's correction path does: a signed delta on one pair,
        # only where no total goes negative (state never holds one).
        _, e, team, fields = op
        pw = state.windows[sorted(state.windows)[int(e[1:]) % len(state.windows)]]
        delta = Totals(*fields)
        if min(((pw.by_team(e) or {}).get(team, Totals()) + delta).to_dict().values()) >= 0:
            pw.add(e, team, delta)
    elif kind == "cancel" and state.windows:
        # A correction restating a pair to zero: it stays, without activity.
        pw = state.windows[sorted(state.windows)[int(op[1][1:]) % len(state.windows)]]
        for team, t in sorted((pw.by_team(op[1]) or {}).items()):
            pw.add(op[1], team, Totals(-t.input_tokens, -t.output_tokens, -t.cache_read_tokens,
                                       -t.cache_write_tokens, -t.cost_nanos))
    elif kind == "team":
        state.apply_hr(assign(op[1], op[2], op[3]))
    elif kind == "privacy":
        state.apply_hr(privacy(op[1], op[2], op[3]))
    elif kind == "watermark":
        # Finals are built before the window is dropped: compare them too.
        keys = sorted(state.windows)
        before = {k: oracle_message(state, k, final=True) for k in keys}
        for msg in state.advance_watermark(op[1]):
            if isinstance(msg, CandidateMessage):
                want = before[msg.window_key]
                assert msg == CandidateMessage(**{**_fields(want), "version": want.version + 1,
                                                  "watermark": state.watermark})
    elif kind == "round_trip":
        restored = round_trip(state)
        assert restored.to_dict() == state.to_dict()
        for key in state.windows:
            assert restored.windows[key] == state.windows[key]
        for key in state.closed:
            assert restored.closed[key] == state.closed[key]
        state = restored
    elif kind == "drain":
        # Closed windows (late adjustments) are sent as finals.
        dirty = sorted(k for k in state.dirty if k in state.windows or k in state.closed)
        want = [oracle_message(state, k, final=k in state.closed) for k in dirty]
        assert state.drain() == want
    return state


def _fields(msg: CandidateMessage) -> dict:
    return {f: getattr(msg, f) for f in msg.__dataclass_fields__}


@SETTINGS
@given(ops, st.integers(1, 4))
def test_caches_and_messages_match_brute_force_after_any_sequence(sequence, k):
    state = PartitionState(1, LeaderboardConfig(k=k, lateness=timedelta(hours=6), min_team_size=1))
    for op in sequence:
        state = step(state, op)
        check_state(state)


@SETTINGS
@given(ops)
def test_put_engineer_and_constructor_build_the_same_caches(sequence):
    state = PartitionState(0, LeaderboardConfig(k=2))
    for op in sequence:
        state = step(state, op)
    for key, pw in state.windows.items():
        rebuilt = PartitionWindow(key, pw.version)
        engineers = list(pw.contributions)
        random.Random(len(engineers)).shuffle(engineers)
        for e in engineers:
            rebuilt.put_engineer(e, pw.contributions[e])
        if engineers:  # replacing an engineer recomputes; must land on the same caches
            rebuilt.put_engineer(engineers[0], pw.contributions[engineers[0]])
        assert rebuilt == pw
        check_window(rebuilt)
        assert (rebuilt._values, rebuilt._teams) == (pw._values, pw._teams)


def test_contributions_are_read_only():
    pw = PartitionWindow("all")
    pw.add("a", "t", Totals(1))
    try:
        pw.contributions["b"] = {}
    except TypeError:
        pass
    else:
        raise AssertionError("contributions must not be writable behind the caches")
    assert pw.by_team("missing") is None


def test_activity_taken_away_by_a_correction_drops_the_member():
    pw = PartitionWindow("all")
    pw.add("a", "t", Totals(input_tokens=5, events=1))
    assert pw.team_partials()[0].members == 1
    pw.add("a", "t", Totals(input_tokens=-5))
    assert pw.team_partials() == oracle_team_partials(pw)
    assert pw.team_partials()[0].members == 0


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(ENGINEERS + ["x", "y"]),
                       st.tuples(st.integers(-2, 5), st.integers(0, 3), st.integers(-1, 4)), max_size=11),
       st.sampled_from(METRICS), st.integers(0, 12))
def test_top_n_equals_a_full_sort(values, metric, n):
    items = [(e, Totals(i, o, 0, 0, c)) for e, (i, o, c) in values.items()]
    assert top_n(items, metric, n) == oracle_top_n(items, metric, n)
    ranked = [(-t.value(metric), e) for e, t in items if t.value(metric) > 0]
    assert [e for _, e in heapq.nsmallest(n, ranked)] == [e for e, _ in oracle_top_n(items, metric, n)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ENGINEERS[:3]), st.sampled_from(TEAMS[:2] + [NO_TEAM]),
                          st.tuples(*[st.integers(0, 2)] * 5, st.integers(0, 1), st.integers(0, 1))),
                max_size=12))
def test_every_kind_of_activity_makes_a_member(adds):
    # Sparse fields, so cost-only, cache-only and all-zero pairs all occur.
    pw = PartitionWindow("all")
    for e, team, fields in adds:
        pw.add(e, team, Totals(*fields))
    check_window(pw)


def test_worker_stage_corrections_and_restore_keep_caches_exact():
    """The worker's own writers: correction deltas (`_apply_correction`) and
    restore from per-engineer records (`put_engineer`)."""
    import dataclasses
    from datetime import datetime, timezone

    from compstream.codec import encode_event
    from compstream.domain.events import Usage
    from compstream.synth import generate
    from compstream.worker.leaderboards.partition import PartitionStage
    from compstream.worker.processor import SourceMessage, partition_of

    cfg, labels, parts = LeaderboardConfig(k=3, lateness=timedelta(days=2)), {"u": "usage", "g": "grants"}, 2
    # Sparse (about one event per engineer-day) so corrections often empty a pair.
    events = [e for e in generate(engineers=40, usage_events=200, seed=9, with_hr=True, span_days=5, teams=3)
              if e.type in ("usage", "team_assigned")]
    rnd = random.Random(3)
    for u in [e for e in events if isinstance(e, Usage)][::7]:  # corrections: some cancel a pair entirely
        cut = u.input_tokens if rnd.random() < 0.5 else u.input_tokens // 2
        events.append(dataclasses.replace(u, event_id=f"fix-{u.event_id}", corrects_event_id=u.event_id,
                                          input_tokens=-cut, output_tokens=-u.output_tokens,
                                          cache_read_tokens=-u.cache_read_tokens,
                                          cost_nanos=-(u.cost_nanos or 0)))
    now = datetime(2026, 11, 27, tzinfo=timezone.utc)
    offsets: dict = {}
    messages = []
    for e in events:
        topic, p = ("u" if e.type == "usage" else "g"), partition_of(e.engineer_id, parts)
        o = offsets[(topic, p)] = offsets.get((topic, p), -1) + 1
        messages.append(SourceMessage(topic, p, o, e.engineer_id.encode(), encode_event(e), now))
    stage, records = PartitionStage(cfg, labels), {}
    for p in range(parts):
        stage.restore(p, [], 1)
    for i in range(0, len(messages), 53):
        out = stage.process(messages[i:i + 53], 10 + i)
        for recs in out.records.values():
            records.update(recs)
        for p in range(parts):
            check_state(stage.states[p])
    restored = PartitionStage(cfg, labels)
    for p in range(parts):
        restored.restore(p, [(k, v) for k, v in records.items() if k.startswith(f"e|{p}|") or k == f"m|{p}"], 10**9)
        assert set(restored.states[p].windows) == set(stage.states[p].windows)
        for key, pw in restored.states[p].windows.items():
            assert pw.contributions == stage.states[p].windows[key].contributions
        check_state(restored.states[p])
