"""Leaderboards end to end: real broker, two real worker processes (one group),
embedded ClickHouse per worker. Expected boards come from the brute-force model
over all events (tests/domain/leaderboard/lb_support.py), not from the stages.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from compstream.domain.events import LeaderboardPrivacy, TeamAssigned, Usage
from compstream.domain.leaderboard import Pseudonymizer, window_from_key
from compstream.history import open_history
from compstream.publish import publish_events
from compstream.synth import START, generate
from lb_kafka import (
    expected_boards,
    latest_boards,
    mismatches,
    partition,
    rows_of,
    sentinels,
    wait_for,
    watermark_partitions,
)
from support.http import http_json
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
PARTITIONS = 4
K = 6  # < engineers per partition: the partition stage really cuts its lists
MIN_TEAM = 5
LATENESS_S = 6 * 3600
OPTED_OUT = "eng-00007"
TINY_TEAM = ("eng-00030", "eng-00031")  # 2 contributors < MIN_TEAM: hidden


def _events(seed: int, engineers: int, usage_events: int):
    """HR (teams, one opt-out, a tiny team) and usage with one correction."""
    events = [e for e in generate(engineers=engineers, usage_events=usage_events, seed=seed,
                                  span_days=10, teams=4, with_hr=True)
              if isinstance(e, (TeamAssigned, Usage))]
    hr = [e for e in events if isinstance(e, TeamAssigned)]
    hr += [TeamAssigned(f"tiny-{e}", e, "team-tiny", START + timedelta(seconds=1)) for e in TINY_TEAM]
    hr.append(LeaderboardPrivacy("optout-1", OPTED_OUT, True, START - timedelta(days=1)))
    usage = [e for e in events if isinstance(e, Usage)]
    target = usage[len(usage) // 3]
    usage.insert(len(usage) // 3 + 1, dataclasses.replace(
        target, event_id=f"{target.event_id}:c1", corrects_event_id=target.event_id,
        input_tokens=-(target.input_tokens // 2), output_tokens=0, cache_read_tokens=0,
        cost_nanos=-((target.cost_nanos or 0) // 2)))
    return hr, usage


def _worker(tmp_path, name, bootstrap, topics, group, extra=None) -> WorkerProcess:
    env = {"COMPSTREAM_LEADERBOARD_K": str(K), "COMPSTREAM_LEADERBOARD_MIN_TEAM": str(MIN_TEAM),
           "COMPSTREAM_SESSION_TIMEOUT_S": "6", **(extra or {})}
    return WorkerProcess(tmp_path / name, bootstrap, topics, group=group, lateness_s=LATENESS_S,
                         partitions=PARTITIONS, dsn=f"chdb://{tmp_path / name / 'ch'}", extra_env=env)


def _publish_hr(hr, bootstrap, topics, workers):
    """Publish HR and wait until every partition's stage has processed it."""
    publish_events(hr, bootstrap, topics)
    wait_for(lambda: (watermark_partitions(bootstrap, topics.leaderboard_candidates) == set(range(PARTITIONS)),
                      None), 90, "HR watermarks from every partition", workers)


def _wait_boards(bootstrap, topics, expected, workers, timeout_s, what):
    def check():
        bad = mismatches(expected, latest_boards(bootstrap, topics.leaderboards))
        return not bad, bad[:5]
    wait_for(check, timeout_s, what, workers)


@pytest.mark.parametrize("engine", ["transactional", "faust"])
def test_two_workers_publish_exact_boards_history_and_view(kafka_bootstrap, topics, tmp_path, engine, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_ENGINE", engine)  # both engines drive the same stages (core/leaderboard_step.py)
    hr, usage = _events(seed=21, engineers=40, usage_events=1200)
    group = f"g-{topics.prefix}"
    a = _worker(tmp_path, "a", kafka_bootstrap, topics, group).start()
    b = _worker(tmp_path, "b", kafka_bootstrap, topics, group).start()
    workers = [a, b]
    try:
        # HR first, and processed first: team attribution uses the membership
        # known when usage is applied (documented domain limit).
        _publish_hr(hr, kafka_bootstrap, topics, workers)
        publish_events(usage, kafka_bootstrap, topics)
        # A late event (inside lateness) for the last day: big enough to lead.
        last = max(u.occurred_at for u in usage)
        late = Usage("late-1", "eng-00001", "openai", "gpt-4o", last - timedelta(hours=3),
                     90_000_000, 1, 0, 0, 10**13)
        everything = hr + usage
        _wait_boards(kafka_bootstrap, topics, expected_boards(everything, K, MIN_TEAM, {"all"}),
                     workers, 120, "the all-time boards")
        publish_events([late], kafka_bootstrap, topics)
        everything.append(late)
        expected = expected_boards(everything, K, MIN_TEAM)
        # Past every real window's close (October closes Nov 1 + lateness), but
        # within the 35-day retention of the first day: its board must stay.
        ticks = sentinels(datetime(2026, 11, 2, 12, tzinfo=timezone.utc), PARTITIONS)
        publish_events(ticks, kafka_bootstrap, topics)
        _wait_boards(kafka_bootstrap, topics, expected, workers, 120, "final boards for every window")

        published = latest_boards(kafka_bootstrap, topics.leaderboards)
        late_day = f"day:{late.occurred_at.date().isoformat()}|engineer|tokens"
        assert rows_of(published[late_day])[0][0] == "eng-00001", "late event not in its day window"
        for key, board in published.items():
            if board["scope"] == "engineer":
                assert OPTED_OUT not in {e["id"] for e in board["entries"]}, key
            else:
                assert "team-tiny" not in {e["id"] for e in board["entries"]}, key
        # (The opted-out engineer still counts for their team: the brute-force
        # model counts them, and every team board matched it above.)

        # Web view: both workers answer the same board; one from merge state.
        answers = [http_json(w.web_port, "/leaderboards/all/engineers-tokens") for w in workers]
        assert [s for s, _ in answers] == [200, 200], answers
        assert {body["served_by"] for _, body in answers} == {"merge-state", "leaderboards-topic"}
        want = expected["all|engineer|tokens"]
        assert all(rows_of(body) == want for _, body in answers)
        status, body = http_json(a.web_port, "/leaderboards/day/teams-spend")
        assert status == 200 and body["window_key"] == f"day:{ticks[0].occurred_at.date().isoformat()}", body
        assert http_json(a.web_port, "/leaderboards/all/nope")[0] == 400
        assert http_json(a.web_port, "/leaderboards/day:2026-13-01/teams-spend")[0] == 400
        assert http_json(b.web_port, "/leaderboards/day:2020-01-01/teams-spend")[0] == 404
    finally:
        for w in workers:
            assert w.stop() in (0, None), w.log_tail()

    # Closed windows in history, across both workers' stores (whichever merged).
    stored: dict[tuple, tuple] = {}
    for w in workers:
        store = open_history(w.env["COMPSTREAM_CLICKHOUSE_DSN"])
        try:
            for key in {k.split("|")[0] for k in expected if not k.startswith("all|")}:
                window = window_from_key(key)
                for r in store.leaderboard_windows(window.kind.value, window.start):
                    stored[(key, r.dimension, r.rank)] = (r.subject, r.value)
        finally:
            store.close()
    want_rows = {}
    for key, rows in expected.items():
        window_key, scope, metric = key.split("|")
        if window_key == "all":
            continue
        for rank, (ident, value) in enumerate(rows, start=1):
            want_rows[(window_key, f"{scope}s-{metric}", rank)] = (ident, value)
    assert stored == want_rows


def test_pseudonyms_hide_real_ids(kafka_bootstrap, topics, tmp_path):
    secret = "s3cret-for-the-leaderboard-test"
    hr, usage = _events(seed=5, engineers=20, usage_events=200)
    worker = _worker(tmp_path, "p", kafka_bootstrap, topics, f"g-{topics.prefix}",
                     {"COMPSTREAM_LEADERBOARD_PSEUDONYMS": "on", "COMPSTREAM_LEADERBOARD_SECRET": secret}).start()
    pseudo = Pseudonymizer(secret)
    try:
        _publish_hr(hr, kafka_bootstrap, topics, [worker])
        publish_events(usage, kafka_bootstrap, topics)
        expected = expected_boards(hr + usage, K, MIN_TEAM, {"all"})
        named = {k: [(pseudo(i) if "|engineer|" in k else i, v) for i, v in rows] for k, rows in expected.items()}
        _wait_boards(kafka_bootstrap, topics, named, [worker], 90, "pseudonymized all-time boards")
        raw = [v for _, v in latest_boards(kafka_bootstrap, topics.leaderboards).items()]
        text = repr(raw)
        assert "eng-" not in text, "a real engineer id reached the public topic"
        assert all(b["pseudonymized"] for b in raw)
    finally:
        assert worker.stop() in (0, None), worker.log_tail()


def test_partition_of_matches_the_worker():
    # The tests' partition helper must agree with the worker's routing.
    from compstream.worker.processor import partition_of

    ids = [f"eng-{i:05d}" for i in range(50)]
    assert [partition(e, PARTITIONS) for e in ids] == [partition_of(e, PARTITIONS) for e in ids]


@pytest.mark.parametrize("engine", ["transactional", "faust"])
def test_crash_and_redelivery_do_not_double_count(kafka_bootstrap, topics, tmp_path, engine, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_ENGINE", engine)
    hr, usage = _events(seed=8, engineers=40, usage_events=1200)
    group = f"g-{topics.prefix}"
    a = _worker(tmp_path, "a", kafka_bootstrap, topics, group).start()
    b = _worker(tmp_path, "b", kafka_bootstrap, topics, group).start()
    workers = [a, b]
    try:
        _publish_hr(hr, kafka_bootstrap, topics, workers)
        half = len(usage) // 2
        publish_events(usage[:half], kafka_bootstrap, topics)
        # Crash one worker mid-stream: its uncommitted batches are redelivered
        # (to the survivor or its restart), which must not count them twice.
        b.kill()
        publish_events(usage[half:], kafka_bootstrap, topics)
        b = _worker(tmp_path, "b", kafka_bootstrap, topics, group).start()
        workers = [a, b]
        _wait_boards(kafka_bootstrap, topics, expected_boards(hr + usage, K, MIN_TEAM, {"all"}),
                     workers, 120, "exact all-time boards after a crash")
    finally:
        for w in workers:
            w.stop(timeout_s=20)


def test_republished_duplicates_are_not_counted_twice(kafka_bootstrap, topics, tmp_path):
    # The same events produced again (new offsets, same ids), mixed into the
    # stream: the ledger drops them by event id and the boards must too.
    hr, usage = _events(seed=13, engineers=20, usage_events=400)
    worker = _worker(tmp_path, "d", kafka_bootstrap, topics, f"g-{topics.prefix}").start()
    try:
        _publish_hr(hr, kafka_bootstrap, topics, [worker])
        half = len(usage) // 2
        publish_events(usage[:half] + usage[:120] + usage[half:] + usage[half:half + 80], kafka_bootstrap, topics)
        # Exact equality is reached only when every event counted once: a
        # counted duplicate keeps some engineer's and team's totals too high.
        _wait_boards(kafka_bootstrap, topics, expected_boards(hr + usage, K, MIN_TEAM, {"all"}),
                     [worker], 90, "all-time boards with every duplicate dropped")
    finally:
        assert worker.stop() in (0, None), worker.log_tail()
