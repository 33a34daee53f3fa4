"""Provider exports all the way to balances: ingest (OpenAI, Anthropic, GCP
with a restatement) -> real broker -> real worker -> balance topic, and a
re-ingest (with a lost journal) changes nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from compstream.domain.events import GrantIssued
from compstream.ingest import ADAPTERS
from compstream.ingest.journal import Journal
from compstream.ingest.pipeline import Converter
from compstream.ingest.publish import publish
from compstream.publish import publish_events
from support.checks import balance_mismatches, expected_counts, wait_balances, wait_quiet
from support.worker import WorkerProcess

from .conftest import fixture_path

pytestmark = pytest.mark.kafka
EXPORTS = [("openai", "openai_usage_page1.json"), ("openai", "openai_usage_page2.json"),
           ("anthropic", "anthropic_messages.json"), ("gcp", "gcp_billing.csv"), ("gcp", "gcp_billing_restated.csv")]


def _ingest_all(journal_path, identity_map, bootstrap, topic) -> list:
    sent = []
    with Journal(journal_path) as journal:
        conv = Converter(journal, identity_map)
        for source, name in EXPORTS:
            text = fixture_path(name).read_text()
            sent += list(publish(conv.convert(ADAPTERS[source](text, name)), bootstrap, topic))
            journal.commit()
    return sent


def test_ingested_usage_reaches_balances_once(kafka_bootstrap, topics, tmp_path, identity_map):
    usage = _ingest_all(tmp_path / "j1.sqlite", identity_map, kafka_bootstrap, topics.usage)
    assert usage and any(e.corrects_event_id for e in usage)  # the restatement became a correction
    engineers = sorted({e.engineer_id for e in usage})
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    grants = [GrantIssued(f"g-{e}", e, f"lot-{e}", 50 * 10**9, start, None, "allowance") for e in engineers]
    publish_events(grants, kafka_bootstrap, topics)
    events = grants + usage
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                           lateness_s=10 * 365 * 86400).start()
    try:
        balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 120, worker)
        assert balance_mismatches(balances, events) == []
        # Re-ingest everything with a fresh journal: same ids, so nothing new is applied.
        again = _ingest_all(tmp_path / "j2.sqlite", identity_map, kafka_bootstrap, topics.usage)
        assert {e.event_id for e in again} >= {e.event_id for e in usage if not e.corrects_event_id}
        wait_quiet(kafka_bootstrap, topics.balances, quiet_s=3, timeout_s=60)
        after = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 60, worker)
        for engineer, record in balances.items():
            for field in ("usage_cost_nanos", "input_tokens", "output_tokens", "events_applied"):
                assert after[engineer][field] == record[field], (engineer, field)
    finally:
        assert worker.stop() == 0, worker.log_tail()
