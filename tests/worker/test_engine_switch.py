"""Switching engines on a live deployment: both engines keep their state in
the same changelog (books, stream times, positions) and write history to the
same topic, so a worker stopped on one engine and started on the other on
the same group and data dir goes on where it stopped, in both directions.
Expected values come from the offline replay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compstream.publish import publish_events
from support.checks import (
    assert_history_exact,
    balance_mismatches,
    expected_counts,
    history_figures,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S
from support.worker import WorkerProcess
from worker.core.scenario import LATENESS_S, START, scenario

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def test_faust_then_transactional_then_faust_equals_the_replay(kafka_bootstrap, topics, tmp_path):
    published = scenario(seed=31, engineers=40, usage_per_engineer=24, duplicates=20)
    events = [e for _, e in published]
    thirds = [events[: len(events) // 3], events[len(events) // 3: 2 * len(events) // 3],
              events[2 * len(events) // 3:]]
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"switch-{topics.prefix}",
                           lateness_s=LATENESS_S, partitions=PARTITIONS,
                           extra_env={"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)})
    seen: list = []
    for engine, part in zip(("faust", "transactional", "faust"), thirds, strict=True):
        worker.env["COMPSTREAM_ENGINE"] = engine
        worker.start()
        publish_events(part, kafka_bootstrap, topics)
        seen += part
        balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(seen), 180, worker)
        wait_quiet(kafka_bootstrap, topics.balances, quiet_s=2, timeout_s=60)
        log = worker.log_path.read_text()
        assert worker.stop() == 0, worker.diagnosis()
        assert "restored" in log, f"the {engine} engine did not restore from the changelog"
        bad = balance_mismatches(balances, seen)
        assert not bad, (engine, bad[:5])
    ticks = sentinels(START + timedelta(days=90), PARTITIONS)
    worker.env["COMPSTREAM_ENGINE"] = "transactional"
    worker.start()
    publish_events(ticks, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 60, worker)
    wait_quiet(kafka_bootstrap, topics.balances, quiet_s=2, timeout_s=60)
    assert worker.stop() == 0, worker.diagnosis()
    # One history, loaded by whichever engine ran (the loader's group is the data dir's).
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LATENESS_S))
    assert_history_exact(figures)
