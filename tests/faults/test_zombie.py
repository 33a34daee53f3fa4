"""A worker paused (SIGSTOP) past its session timeout while another takes
over, then resumed (SIGCONT): it must not corrupt balances, books or history.

Each worker process has its own embedded ClickHouse (chdb is in-process), so
"history" here is per worker: each must hold every event it wrote exactly
once. Against a shared ClickHouse server the sink's high-water marks also
drop a zombie's late rows; with separate embedded stores they cannot, so the
test reports (not asserts) overlap between the two stores.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from compstream.publish import publish_events
from compstream.synth import generate
from compstream.worker.engines.faust.app import FENCED_EXIT_CODE
from support.checks import BalanceTail, balance_mismatches, expected_counts, history_figures, lost_events, wait_balances
from support.faults import SESSION_TIMEOUT_S, ledger_only, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def test_paused_worker_does_not_corrupt_state(kafka_bootstrap, topics, tmp_path, reliability):
    events = ledger_only(generate(engineers=40, usage_events=3_000, seed=97))
    phase1, phase2, phase3 = events[:800], events[800:2400], events[2400:]
    a = worker_for(tmp_path, kafka_bootstrap, topics, "a", PARTITIONS).start()
    b = worker_for(tmp_path, kafka_bootstrap, topics, "b", PARTITIONS)
    try:
        publish_events(phase1, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, expected_counts(phase1), 120, a)
        tail = BalanceTail(kafka_bootstrap, topics.balances)
        try:
            publish_events(phase2, kafka_bootstrap, topics)
            # A is mid-stream on phase 2: it has published a balance that
            # counts a phase-2 event (SIGSTOP right away, while it goes on).
            tail.wait_beyond(expected_counts(phase1), 60, a)
        finally:
            tail.close()
        os.kill(a.proc.pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        b.start()
        # B takes every partition once A's session expires, and finishes phase 2.
        wait_balances(kafka_bootstrap, topics.balances, expected_counts(phase1 + phase2), 180, b)
        time.sleep(max(0.0, SESSION_TIMEOUT_S * 2 - (time.monotonic() - paused_at)))
        os.kill(a.proc.pid, signal.SIGCONT)  # the zombie wakes up mid-batch
        t0 = time.monotonic()
        publish_events(phase3, kafka_bootstrap, topics)
        balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 180, b)
        recover_s = time.monotonic() - t0
        bad_live = balance_mismatches(balances, events)
        # Books must not have been corrupted by late changelog writes: stop
        # both, restart B alone (it restores every partition from the
        # changelog) and feed one more event per engineer.
        # A either noticed it was fenced mid-batch and exited (75), or had no
        # batch in flight and simply rejoined the group.
        zombie_rc = a.proc.returncode if a.proc.poll() is not None else a.stop()
        assert zombie_rc in (0, FENCED_EXIT_CODE), a.log_tail()
        assert b.stop() == 0, b.log_tail()
        b2 = worker_for(tmp_path, kafka_bootstrap, topics, "b", PARTITIONS).start()
        extra = ledger_only(generate(engineers=40, usage_events=200, seed=98))
        extra = [e for e in extra if e.type == "usage"]
        publish_events(extra, kafka_bootstrap, topics)
        after = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events + extra), 180, b2)
        bad_after = balance_mismatches(after, events + extra)
        assert b2.stop() == 0, b2.log_tail()
    finally:
        for w in (a, b):
            if w.proc is not None and w.proc.poll() is None:
                os.kill(w.proc.pid, signal.SIGCONT)
                w.kill()
    per_store = {name: history_figures(w.env["COMPSTREAM_CLICKHOUSE_DSN"], events + extra, None)
                 for name, w in (("a", a), ("b", b))}
    duplicated = sum(f["event_rows"] - f["event_ids"] for f in per_store.values())
    overlap = sum(f["event_ids"] for f in per_store.values()) - len({e.event_id for e in events + extra})
    reliability.record(
        order=7, scenario="zombie worker (SIGSTOP past session timeout, SIGCONT)",
        events=len(events) + len(extra), faults="SIGSTOP mid-batch, takeover, SIGCONT, restart",
        lost=lost_events(after, expected_counts(events + extra)), duplicated=duplicated,
        mismatched=len(bad_live) + len(bad_after), recover_s=recover_s,
        notes=(f"zombie exit code {zombie_rc} ({'fenced mid-batch' if zombie_rc == FENCED_EXIT_CODE else 'rejoined'}); "
               f"event rows present in both embedded stores: {overlap}"),
        figures=per_store,
    )
    assert bad_live == [] and bad_after == []
    assert duplicated == 0, per_store
