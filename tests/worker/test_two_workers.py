"""Two worker processes in one group: partitions split between them, a
rebalance while events flow (the second joins mid-stream, then leaves); the
balances must equal an offline replay and each store hold events once."""

from __future__ import annotations

import time

import pytest

from compstream.publish import publish_events
from compstream.synth import generate
from support.checks import balance_mismatches, expected_counts, history_figures, wait_balances
from support.faults import ledger_only, worker_for

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def test_two_workers_with_rebalances_agree_with_replay(kafka_bootstrap, topics, tmp_path):
    events = ledger_only(generate(engineers=60, usage_events=4_000, seed=99))
    a = worker_for(tmp_path, kafka_bootstrap, topics, "a", PARTITIONS).start()
    b = worker_for(tmp_path, kafka_bootstrap, topics, "b", PARTITIONS)
    chunks = [events[i:i + 400] for i in range(0, len(events), 400)]
    for n, chunk in enumerate(chunks):
        publish_events(chunk, kafka_bootstrap, topics)
        if n == 2:
            b.start()  # joins mid-stream: rebalance
            # Publish on once it is in the group (Faust logs Ready after its
            # first assignment), so the next chunks flow while it owns
            # partitions; on a slow machine the stop below could otherwise
            # come during its start-up, before it ever joined.
            b.wait_until(lambda: any(mark in b.log_path.read_text(errors="replace")
                                     for mark in ("[^Worker]: Ready", "restored:")), 120,
                         "worker b to join the group")
        if n == 6:
            assert b.stop() == 0, b.log_tail()  # leaves mid-stream: rebalance again
        time.sleep(0.5)
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 240, a)
    assert balance_mismatches(balances, events) == []
    assert a.stop() == 0, a.log_tail()
    for w in (a, b):
        figures = history_figures(w.env["COMPSTREAM_CLICKHOUSE_DSN"], events, None)
        assert figures["event_rows"] == figures["event_ids"], figures
