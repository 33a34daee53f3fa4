"""kill -9 at random moments, and a crash between history write and commit."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from compstream.readback import latest_balances
from compstream.synth import START, generate
from compstream.worker.core.cut import REPLAY_LOG as CUT_REPLAY_LOG
from support.checks import (
    LONG_LATENESS_S,
    assert_history_exact,
    balance_mismatches,
    complete,
    expected_counts,
    history_figures,
    lost_events,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S, SOAK, ledger_only, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def _finish(worker, bootstrap, topics, events, timeout_s=240):
    """Wait for complete balances, finalize every posting with sentinel ticks,
    stop the worker; return (balances, ticks, recover_s)."""
    t0 = time.monotonic()
    balances = wait_balances(bootstrap, topics.balances, expected_counts(events), timeout_s, worker)
    recover_s = time.monotonic() - t0
    ticks = sentinels(START + timedelta(days=120), PARTITIONS)
    publish_events(ticks, bootstrap, topics)
    wait_balances(bootstrap, topics.balances, expected_counts(ticks), 60, worker)
    wait_quiet(bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    assert worker.stop() == 0, worker.log_tail()
    return balances, ticks, recover_s


def _history_ok(worker, events, ticks) -> dict:
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=LONG_LATENESS_S))
    assert_history_exact(figures)
    return figures


def test_kill_minus_9_at_random_moments(kafka_bootstrap, topics, tmp_path, reliability):
    usage, kills = (10_000, 8) if SOAK else (6_000, 5)
    events = ledger_only(generate(engineers=100, usage_events=usage, seed=91))
    rng = random.Random(91)
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "kill9", PARTITIONS)

    chunks = [events[i:i + 500] for i in range(0, len(events), 500)]

    failures: list[BaseException] = []

    def produce():  # keep producing while the worker is being killed
        try:
            for chunk in chunks:
                publish_events(chunk, kafka_bootstrap, topics)
                time.sleep(0.3)
        except BaseException as exc:  # surfaced below: a dead producer is not a lost event
            failures.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    kill_after_s = []
    for _ in range(kills):
        worker.start()
        delay = rng.uniform(SESSION_TIMEOUT_S, SESSION_TIMEOUT_S + 8)  # joined and mid-stream
        time.sleep(delay)
        worker.kill()
        kill_after_s.append(round(delay, 1))
    producer.join(timeout=120)
    assert not producer.is_alive()
    assert not failures, f"the test's producer failed: {failures[0]!r}"
    worker.start()
    balances, ticks, recover_s = _finish(worker, kafka_bootstrap, topics, events)
    bad = balance_mismatches(balances, events)
    figures = _history_ok(worker, events, ticks)
    reliability.record(
        order=1, scenario="kill -9 soak", events=len(events), faults=f"{kills} × SIGKILL",
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad),
        recover_s=recover_s, notes=f"kills after {kill_after_s} s; {figures['posting_rows']} postings, chains verified",
        figures=figures,
    )
    assert bad == []


def test_crash_between_history_write_and_offset_commit(kafka_bootstrap, topics, tmp_path, reliability, engine):
    events = ledger_only(generate(engineers=30, usage_events=1_500, seed=92))
    # Leaderboards off: every checkpoint is then a batch of the source topics,
    # and on Faust each writes its cut first (a merge-only one writes none).
    boards = {"COMPSTREAM_LEADERBOARDS": "off"}
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "crash-after-history", PARTITIONS,
                        COMPSTREAM_FAULT_CRASH_AFTER_HISTORY="2", **boards)
    worker.start()
    first, rest = events[:400], events[400:]
    publish_events(first, kafka_bootstrap, topics)  # at least one batch (one history write) …
    deadline = time.monotonic() + 120
    while worker.alive() and time.monotonic() < deadline:  # … applied (or already crashed on write 2)
        if complete(latest_balances(kafka_bootstrap, topics.balances, timeout_s=1), expected_counts(first)):
            break
    publish_events(rest, kafka_bootstrap, topics)  # so a 2nd write surely comes: it crashes before the commit
    worker.proc.wait(timeout=120)
    assert worker.proc.returncode == 99, worker.log_tail()  # the injected crash happened
    crashed = worker
    worker = worker_for(tmp_path, kafka_bootstrap, topics, "crash-after-history", PARTITIONS, **boards)
    assert worker.data_dir == crashed.data_dir  # same state dir and history
    logged_before = worker.log_path.read_text(errors="replace").count(CUT_REPLAY_LOG)
    worker.start()
    balances, ticks, recover_s = _finish(worker, kafka_bootstrap, topics, events)
    replays = worker.log_path.read_text(errors="replace").count(CUT_REPLAY_LOG) - logged_before
    if engine == "faust":  # its crashed batch's outputs are out without its positions: read again as cut
        assert replays >= 1, worker.log_tail()
    else:  # the aborted transaction left nothing to re-read as it was
        assert replays == 0, worker.log_tail()
    bad = balance_mismatches(balances, events)
    figures = _history_ok(worker, events, ticks)
    reliability.record(
        order=2, scenario="crash after history write, before commit", events=len(events),
        faults="os._exit right after a history write",
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=recover_s,
        notes=(f"the crashed batch was read again as it was cut (core/cut.py; {replays} partitions)"
               if engine == "faust" else
               "the aborted attempt left nothing; the retry may be cut otherwise")
        + "; high-water marks drop the written rows", figures=figures,
    )
    assert bad == []
