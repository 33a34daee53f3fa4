"""A rebuild takes the stream's decisions again (worker/recorded_late.py): every
event the stream judged late is late again under the same watermark
(events.LateAt), and no event it took on time is late, whatever the
rebuild's batches and crashes (books with waiting decisions restored from
the changelog). So the rebuilt balances are the ones before the rebuild and
the ones history's first decisions give: the statements. Without the
decisions they are not (test_late_diff)."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compstream.config import BOOK_BYTES_MAX
from compstream.domain.events import GrantIssued, Usage
from compstream.history.wire import decode_batch
from compstream.ops.diff import compare, dead_letters_in
from compstream.replay.late_decisions import collect_decisions
from compstream.worker import recorded_late
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, changelog_topic, history_topic
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import Crash, MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.positions import stored_positions
from worker.core.scenario import LATENESS_S, START, Clock, scenario
from worker.core.test_late_diff import _run, _views, exports_a_day_apart
from worker.core.test_protocol import PARTITIONS, TOPICS, TS, _drained
from worker.core.test_waves import WAVE_RUNS
from worker.core.test_waves import run as run_waves


def _money(balances: dict[str, dict]) -> dict[str, dict]:
    """The balance fields of each last record (not when it was written: its watermark and as_of)."""
    return {e: {k: v for k, v in r.items() if k.endswith("_nanos")} for e, r in balances.items()}


def _decisions(log: MemoryLog):
    return collect_decisions((f"history@{n}", v) for n, (_, v) in enumerate(log.topic_records(history_topic(TOPICS))))


def rebuild(log: MemoryLog, keep: bool, events_max: int, crashes: frozenset[int], seed: int, data_dir,
            spent: list | None = None, book_bytes_max: int = BOOK_BYTES_MAX) -> int:
    """The rebuild as `compstream rebuild` runs it: the decisions collected
    from the history topic into the file the worker reads, the group's
    offsets and the changelog gone. Returns how many times it crashed.
    `spent`: gets the group's committed offsets each time the worker finds
    the decisions all taken (where it would retire the file)."""
    recorded = None
    if keep:
        records = ((f"history@{n}", v) for n, (_, v) in enumerate(log.topic_records(history_topic(TOPICS))))
        refused, moves = dead_letters_in(v for _, v in log.topic_records(TOPICS.dead_letters))
        collected = recorded_late.collect(records, timedelta(seconds=LATENESS_S), moves)
        assert collected is not None
        # Also its refusals and how far it judged (ops/rebuild.keep_decisions):
        # the changelog's positions, or the group's commits where further.
        collected.refused = refused
        sources = (TOPICS.usage, TOPICS.grants)
        through = {(t, p): o for (t, p), o in log.offsets.items() if t in sources}
        changelog = [r for (t, _), found in log.records.items() if t == changelog_topic("w") for r in found]
        for tp, o in stored_positions(changelog, sources, PARTITIONS).items():
            through[tp] = max(o, through.get(tp, 0))
        assert through, "the stream's positions"
        collected.through = through
        recorded_late.write(data_dir, collected, LATENESS_S)
        recorded = recorded_late.read(data_dir, LATENESS_S)
    log.offsets.clear()
    config = CoreConfig(TOPICS, f"rebuilt-{seed}-{events_max}", PARTITIONS, LATENESS_S, book_bytes_max,
                        recorded=recorded,
                        on_recorded_spent=None if spent is None else lambda: spent.append(dict(log.offsets)))
    output, rng = MemoryOutput(log), random.Random(seed)

    def new_loop() -> CheckpointLoop:
        source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), rng, TS)
        source.assign([(t, p) for t in (TOPICS.usage, TOPICS.grants) for p in range(PARTITIONS)])
        return CheckpointLoop(lambda: LedgerCore(config), source, output, idle_s=1e9,
                              batch_events_max=events_max, clock=Clock())

    loop, crashed = new_loop(), 0
    for i in range(20_000):
        output.crash_next = i in crashes
        try:
            loop.run_once()
        except Crash:
            crashed += 1
            loop = new_loop()
        if i > max(crashes, default=0) and _drained(log, loop):
            for _ in range(3):  # the sweeps after the last batch
                loop.run_once()
            return crashed
    raise AssertionError("the rebuild did not drain the source topics")


def _a_day_old_export():
    # docs/runbook.md scenario 8 (and tests/ops/test_rebuild.py on the broker):
    # grants expiring at 02:00, OpenAI usage through the day, then a day-old
    # Anthropic export, late: drawn on nothing live (the grants were expired
    # and final), on the grants in a rebuild that judges it again.
    day = START + timedelta(days=1)
    out = []
    for e in ("ada", "ken"):
        out.append(GrantIssued(f"g-{e}", e, f"G-{e}", 20 * 10**9, day - timedelta(days=5), day + timedelta(hours=2),
                               "allowance"))
        out += [Usage(f"oa-{e}-{h}", e, "openai", "gpt-4o", day + timedelta(hours=h), 10, 10, 0, 0, 3 * 10**9)
                for h in range(0, 24, 4)]
    out.sort(key=lambda ev: ev.type != "grant_issued")
    exports = [Usage(f"an-{e}-{h}", e, "anthropic", "claude", day - timedelta(days=1, hours=-h), 10, 10, 0, 0,
                     2 * 10**9) for e in ("ada", "ken") for h in range(0, 24, 6)]
    return [(None, ev) for ev in out + exports], len(out)


def test_the_rebuild_replays_the_first_decisions_and_agrees_with_the_statements(tmp_path):
    published, first_wave = _a_day_old_export()
    log = _run(published, chunk=first_wave, events_max=10_000, faults={}, seed=3)
    first = _decisions(log).first
    assert sorted(first) == ["ada", "ken"] and all(len(rows) == 4 for rows in first.values()), first
    before = _views(log)[0]
    assert {e: r["expired_nanos"] for e, r in before.items()} == {"ada": 17 * 10**9, "ken": 17 * 10**9}

    rebuild(log, False, 10_000, frozenset(), 5, tmp_path / "judged-again")
    live, groups, _ = _views(log)
    judged_again = {d.engineer_id for d in compare(live, groups, late=first)}
    assert judged_again, "without the decisions the rebuild must disagree here"
    # On time where the rebuild read the export with the day's usage: drawn on the grant.
    assert {e: live[e]["expired_nanos"] for e in judged_again} == {e: 9 * 10**9 for e in judged_again}

    through = {tp: o for tp, o in log.offsets.items() if tp[0] in (TOPICS.usage, TOPICS.grants)}
    spent: list[dict] = []
    rebuild(log, True, 10_000, frozenset(), 6, tmp_path / "replayed", spent)
    # Taken in one batch here: spent at its commit, past every position the stream had.
    assert len(spent) == 1 and all(spent[0].get(tp, 0) >= o for tp, o in through.items()), (spent, through)
    live, groups, _ = _views(log)
    assert _money(live) == _money(before)
    assert compare(live, groups, late=first) == []
    decisions = _decisions(log)
    assert decisions.first == first and decisions.rejudged() == set()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 40), events_max=st.integers(1, 60),
       faults=st.dictionaries(st.integers(0, 80), st.sampled_from(["crash", "abort"]), max_size=3),
       rebuild_max=st.sampled_from([7, 50, 400, 10_000]), crashes=st.frozensets(st.integers(0, 30), max_size=3))
def test_any_live_timing_and_any_rebuild_end_where_the_statements_are(tmp_path, seed, chunk, events_max, faults,
                                                                      rebuild_max, crashes):
    log = _run(exports_a_day_apart(seed, engineers=4), chunk, events_max, faults, seed)
    first = _decisions(log).first
    assert first is not None
    before = _views(log)[0]
    through = {tp: o for tp, o in log.offsets.items() if tp[0] in (TOPICS.usage, TOPICS.grants)}
    spent: list[dict] = []
    rebuild(log, True, rebuild_max, crashes, seed, tmp_path / f"r{seed}-{rebuild_max}-{len(crashes)}", spent)
    # The decisions are let go only once commits have passed every position the stream had
    # (after a crash the new worker finds them taken again, at its first commit).
    assert spent and all(all(at.get(tp, 0) >= o for tp, o in through.items()) for at in spent), (spent, through)
    live, groups, _ = _views(log)
    assert compare(live, groups, late=first) == []
    assert _money(live) == _money(before)
    assert _decisions(log).rejudged() == set()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 40), events_max=st.integers(1, 60),
       faults=st.dictionaries(st.integers(0, 80), st.sampled_from(["crash", "abort"]), max_size=2),
       rebuild_max=st.sampled_from([7, 50, 400, 10_000]), crashes=st.frozensets(st.integers(0, 30), max_size=2),
       limit=st.sampled_from([1024, 1536, 2048]), per_day_max=st.sampled_from([4, 16]))
@example(seed=0, chunk=1, events_max=1, faults={}, rebuild_max=7, crashes=frozenset(), limit=1024, per_day_max=4)
@example(seed=0, chunk=4, events_max=3, faults={}, rebuild_max=7, crashes=frozenset(), limit=1024, per_day_max=16)
def test_books_at_their_byte_limit_rebuild_to_the_same_balances(tmp_path, seed, chunk, events_max, faults,
                                                                  rebuild_max, crashes, limit, per_day_max):
    """Books so small that the stream refuses usage for room (book_full) and
    forgets old days' ids for room (a re-sent export is then too_old, and a
    first one dated before that horizon too): the rebuild, in other batches,
    with waiting late decisions and crashes, refuses what the stream refused
    and takes what it took. Judged again (forgetting ids when its own books
    fill up), it refused as too old an export the stream had applied:
    seed=0, limit=1024. And it judges no late event otherwise: the stream
    time that refused usage moved counts where the rebuild must hold a book
    back (seed=0, chunk=4, events_max=3, rebuild_max=7, limit=1024,
    per_day_max=16 held none, and the rebuild took a late export under a
    later watermark than the stream)."""
    log = _run(exports_a_day_apart(seed, engineers=4, per_day_max=per_day_max), chunk, events_max, faults, seed,
               book_bytes_max=limit)
    _rebuilds_alike(log, rebuild_max, crashes, seed, tmp_path / f"t{seed}-{rebuild_max}-{limit}-{len(crashes)}", limit)


def _rebuilds_alike(log: MemoryLog, rebuild_max: int, crashes: frozenset[int], seed: int, data_dir,
                    limit: int) -> None:
    """Rebuilt with the stream's decisions: the same money, no decision taken otherwise."""
    first = _decisions(log).first
    before = _views(log)[0]
    rebuild(log, True, rebuild_max, crashes, seed, data_dir, book_bytes_max=limit)
    assert _money(_views(log)[0]) == _money(before)
    # The rebuilt books post what the stream posted, in its order: each
    # engineer's chain has one row per seq, whichever copy a store keeps.
    hashes: dict[tuple[str, int], set[str]] = {}
    for _, value in log.topic_records(history_topic(TOPICS)):
        for p in decode_batch(value).postings:
            hashes.setdefault((p.engineer_id, p.seq), set()).add(p.hash)
    assert [k for k, h in hashes.items() if len(h) > 1] == []
    if first is not None:
        assert _decisions(log).rejudged() == set()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 40), events_max=st.integers(1, 60),
       faults=st.dictionaries(st.integers(0, 80), st.sampled_from(["crash", "abort"]), max_size=2),
       rebuild_max=st.sampled_from([7, 50, 400, 10_000]), crashes=st.frozensets(st.integers(0, 30), max_size=2),
       limit=st.sampled_from([1024, 2048, BOOK_BYTES_MAX]), usage=st.integers(1, 40),
       gap_minutes=st.sampled_from([5, 60, 24 * 60]))
def test_grants_ahead_teams_offboardings_and_duplicates_of_every_kind_rebuild_alike(
        tmp_path, seed, chunk, events_max, faults, rebuild_max, crashes, limit, usage, gap_minutes):
    """The other timing users have (worker/core/scenario.py): grants published
    days ahead, teams, revocations, offboardings, every kind republished."""
    published = scenario(seed, engineers=4, usage_per_engineer=usage, usage_gap_minutes_max=gap_minutes)
    log = _run(published, chunk, events_max, faults, seed, book_bytes_max=limit)
    _rebuilds_alike(log, rebuild_max, crashes, seed, tmp_path / f"s{seed}-{rebuild_max}-{limit}-{len(crashes)}", limit)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**WAVE_RUNS, limit=st.sampled_from([1024, 2048, BOOK_BYTES_MAX]), per_day_max=st.sampled_from([4, 16]),
       rebuild_max=st.sampled_from([7, 50, 400]))
# Found by this test when the rebuild took the group's commits for how far the
# stream had judged: Faust leaves them behind what it processed (or past what
# it skipped), and below the changelog's positions the rebuild judged again.
@example(seed=32, backlog_pct=0, chunk=34, events_max=21, crash={}, limit=1024, per_day_max=4, rebuild_max=7)
@example(seed=0, backlog_pct=0, chunk=15, events_max=8, crash={}, limit=1024, per_day_max=4, rebuild_max=7)
def test_a_faust_stream_rebuilds_alike(tmp_path, seed, backlog_pct, chunk, events_max, crash, limit, per_day_max,
                                       rebuild_max):
    """The Faust engine's stream (waves, crashes between them, commits that
    lag or lead), then a rebuild: the same money and decisions."""
    published = exports_a_day_apart(seed, engineers=4, per_day_max=per_day_max)
    log = run_waves(published, len(published) * backlog_pct // 100, chunk, crash, seed, events_max,
                    book_bytes_max=limit)
    _rebuilds_alike(log, rebuild_max, frozenset(), seed, tmp_path / f"w{seed}-{rebuild_max}-{limit}", limit)
