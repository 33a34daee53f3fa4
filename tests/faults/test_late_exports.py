"""Both engines against the real broker: exports from two providers a day
apart (the Anthropic export a day late: late events, many of them after
their grant's expiry was final), a crash before a commit and a kill -9 in the
middle. `compstream diff` (the live balances against the source topics, the
late decisions read back from the history topic) must find them equal;
history holds every event once, and `audit verify --replay` finds nothing
on either engine (on Faust a batch read again after a crash between its
waves is the batch it was: core/cut.py)."""

from __future__ import annotations

import json
import time

import pytest
from ops.helpers import env_for, run

from compstream.history import open_history
from compstream.history.verify import verify_store
from compstream.publish import publish_events
from compstream.worker.core.cut import REPLAY_LOG as CUT_REPLAY_LOG
from support.checks import expected_counts, history_figures, wait_balances, wait_quiet
from support.faults import SESSION_TIMEOUT_S
from support.worker import WorkerProcess
from worker.core.scenario import LATENESS_S
from worker.core.test_late_diff import exports_a_day_apart

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def test_exports_a_day_apart_with_crashes_agree_with_diff(kafka_bootstrap, topics, tmp_path, reliability, engine):
    published = exports_a_day_apart(seed=2027, engineers=40)
    events = [e for _, e in published]
    group = f"late-{topics.prefix}"
    env = {"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S), "COMPSTREAM_BATCH_EVENTS_MAX": "50"}
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                           partitions=PARTITIONS, extra_env=env)
    half = len(events) // 2
    worker.env["COMPSTREAM_FAULT_CRASH_AFTER_HISTORY"] = "4"
    worker.start()
    publish_events(events[:half], kafka_bootstrap, topics)  # in publish order, days of exports
    worker.wait_until(lambda: not worker.alive(), 120, "the injected crash before commit 4")
    worker.env.pop("COMPSTREAM_FAULT_CRASH_AFTER_HISTORY")
    worker.start()
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(events[:half]), 180, worker)
    # On Faust the crashed checkpoint is read again as it was cut when it was a batch of the source
    # topics (it may be one of the leaderboard merge's); the transactional engine writes no cuts.
    replays = worker.log_path.read_text(errors="replace").count(CUT_REPLAY_LOG)
    assert replays == 0 or engine == "faust", worker.log_tail()
    publish_events(events[half:], kafka_bootstrap, topics)
    time.sleep(0.5)
    worker.kill()  # kill -9 wherever it is
    t0 = time.monotonic()
    worker.start()
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 180, worker)
    recover_s = time.monotonic() - t0
    wait_quiet(kafka_bootstrap, topics.balances, quiet_s=2, timeout_s=60)
    cli_env = env_for(kafka_bootstrap, topics, tmp_path / "w", group, COMPSTREAM_LATENESS_S=str(LATENESS_S))
    r = run(["diff", "--settle", "30", "--json"], cli_env)
    result = json.loads(r.stdout)
    assert worker.stop() == 0, worker.diagnosis()
    assert r.exit_code == 0, result["differences"][:5]
    assert result["late_engineers"] >= 10, result  # most engineers had a late export: this tests something

    dsn = worker.env["COMPSTREAM_CLICKHOUSE_DSN"]
    figures = history_figures(dsn, events, None)
    assert figures["event_rows"] == figures["event_ids"] == figures["expected_events"], figures
    store = open_history(dsn)
    try:
        findings = verify_store(store, replay=True).findings
        late_engineers = {row.engineer_id for row in store.late_events()}
    finally:
        store.close()
    # On Faust a crash between waves makes a batch be read again: as it was
    # cut (core/cut.py), so the store's first copy of a row is the re-read's.
    assert findings == [], findings[:3]
    assert late_engineers, "no late event in the store: the scenario would test nothing"
    reliability.record(order=21, scenario="exports a day apart (late events past expiries)", events=len(events),
                       faults="crash before commit + kill -9", lost=0,
                       duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(result["differences"]),
                       recover_s=recover_s,
                       notes=f"{result['late_events']} late events of {result['late_engineers']} engineers; "
                             f"audit findings {len(findings)}; batch cuts read again after the crash: {replays}")
