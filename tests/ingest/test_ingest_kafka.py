"""End to end through the real local broker: fixture -> ingest/publish.py -> usage topic -> decode."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer

from compstream.codec import decode_event
from compstream.ingest import ADAPTERS
from compstream.ingest.journal import Journal
from compstream.ingest.pipeline import Converter
from compstream.ingest.publish import publish

from .conftest import fixture_path

pytestmark = pytest.mark.kafka


def _ingest(journal, identity_map, source, name, bootstrap, topic):
    conv = Converter(journal, identity_map)
    text = fixture_path(name).read_text()
    sent = list(publish(conv.convert(ADAPTERS[source](text, name)), bootstrap, topic))
    journal.commit()
    return sent


def _read_all(bootstrap, topic, expected, timeout_s=60.0):
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer:
                out.append((message.key, decode_event(message.value)))
        # one more idle poll to catch anything unexpected beyond `expected`
        for message in consumer:
            out.append((message.key, decode_event(message.value)))
    finally:
        consumer.close()
    return out


def test_ingest_to_real_broker_and_read_back(kafka_bootstrap, topics, tmp_path, identity_map):
    with Journal(tmp_path / "j.sqlite") as journal:
        sent = _ingest(journal, identity_map, "gcp", "gcp_billing.csv", kafka_bootstrap, topics.usage)
        # the same export again: identical ids, nothing new produced
        again = _ingest(journal, identity_map, "gcp", "gcp_billing.csv", kafka_bootstrap, topics.usage)
        restated = _ingest(journal, identity_map, "gcp", "gcp_billing_restated.csv", kafka_bootstrap, topics.usage)
    assert len(sent) == 4 and again == [] and len(restated) == 1
    received = _read_all(kafka_bootstrap, topics.usage, expected=5)
    assert sorted(e.event_id for _, e in received if e.corrects_event_id is None) == sorted(e.event_id for e in sent)
    by_id = {event.event_id: (key, event) for key, event in received}
    assert len(by_id) == len(received) == 5
    for event in sent + restated:
        key, got = by_id[event.event_id]
        assert got == event
        assert key == event.engineer_id.encode()
    correction = by_id[restated[0].event_id][1]
    assert correction.corrects_event_id in {e.event_id for e in sent}


def test_fresh_journal_reingest_produces_identical_ids(kafka_bootstrap, topics, tmp_path, identity_map):
    """Even with the journal lost, a re-ingest re-sends the same ids (the ledger dedups them)."""
    with Journal(tmp_path / "a.sqlite") as j1:
        first = _ingest(j1, identity_map, "anthropic", "anthropic_messages.json", kafka_bootstrap, topics.usage)
    with Journal(tmp_path / "b.sqlite") as j2:
        second = _ingest(j2, identity_map, "anthropic", "anthropic_messages.json", kafka_bootstrap, topics.usage)
    received = _read_all(kafka_bootstrap, topics.usage, expected=6)
    ids = [event.event_id for _, event in received]
    assert sorted(ids) == sorted([e.event_id for e in first] * 2)
    assert [e.event_id for e in first] == [e.event_id for e in second]


def test_cli_produces_to_the_usage_topic(kafka_bootstrap, topics, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from compstream.cli.main import app

    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COMPSTREAM_KAFKA_BOOTSTRAP", kafka_bootstrap)
    args = ["ingest", "claude-code", str(fixture_path("claude_code.json")),
            "--identity", str(fixture_path("identity.toml")), "--topic", topics.usage]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    received = _read_all(kafka_bootstrap, topics.usage, expected=3)
    assert len(received) == 3  # the second run found everything unchanged
    assert {e.engineer_id for _, e in received} == {"e1", "e3"}
    assert sum(e.cost_nanos for _, e in received) == 12_505_000_000


def test_wiped_journal_is_rebuilt_from_the_topic(kafka_bootstrap, topics, tmp_path, monkeypatch):
    """New host: an empty journal over a non-empty topic is rebuilt before delivering,
    so an older export re-sent is ignored as with the journal, and nothing conflicts."""
    from typer.testing import CliRunner

    from compstream.cli.main import app
    from compstream.domain.replay import replay_detailed

    monkeypatch.setenv("COMPSTREAM_KAFKA_BOOTSTRAP", kafka_bootstrap)

    def ingest(name, journal, *extra):
        args = ["ingest", "gcp", str(fixture_path(name)), "--identity", str(fixture_path("identity.toml")),
                "--topic", topics.usage, "--journal", str(tmp_path / journal), *extra]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    ingest("gcp_billing.csv", "host1.sqlite")
    ingest("gcp_billing_restated.csv", "host1.sqlite")  # one correction
    topic_before = _read_all(kafka_bootstrap, topics.usage, expected=5)
    assert len(topic_before) == 5

    # host 2, no journal: the older export is recognised as stale after the rebuild
    out = ingest("gcp_billing.csv", "host2.sqlite")
    assert "journal rebuilt from" in out and "4 rows from 5 usage events" in out
    assert "stale (older export)" in out
    out = ingest("gcp_billing_restated.csv", "host2.sqlite")
    assert "journal rebuilt" not in out  # not empty any more
    topic_after = _read_all(kafka_bootstrap, topics.usage, expected=5)
    assert sorted(e.event_id for _, e in topic_after) == sorted(e.event_id for _, e in topic_before)
    assert replay_detailed([e for _, e in topic_after]).conflicts == 0

    # rebuild-journal on demand equals the automatic one; a journal with rows needs --force
    runner = CliRunner()
    base = ["ingest", "rebuild-journal", "--topic", topics.usage]
    done = runner.invoke(app, base + ["--journal", str(tmp_path / "host3.sqlite")])
    assert done.exit_code == 0 and "4 rows from 5 usage events" in done.output, done.output
    refused = runner.invoke(app, base + ["--journal", str(tmp_path / "host3.sqlite")])
    assert refused.exit_code == 2 and "--force" in refused.output
    with Journal(tmp_path / "host3.sqlite") as j3, Journal(tmp_path / "host1.sqlite") as j1:
        assert [(r[0], r[4], r[6], r[7], r[8]) for r in j3.snapshot()] == \
            [(r[0], r[4], r[6], r[7], r[8]) for r in j1.snapshot()]

    # reprice on a new host rebuilds first (nothing here is unpriced: nothing sent)
    repriced = runner.invoke(app, ["ingest", "reprice", "--topic", topics.usage,
                                   "--journal", str(tmp_path / "host5.sqlite")])
    assert repriced.exit_code == 0 and "4 rows from 5 usage events" in repriced.output, repriced.output

    # Without the rebuild (the old behaviour, now a warning) the restated row is
    # re-sent as an original with other numbers: the conflict this prevents.
    out = ingest("gcp_billing_restated.csv", "host4.sqlite", "--no-journal-rebuild")
    assert "warning" in out and "rebuild-journal" in out
    topic_last = _read_all(kafka_bootstrap, topics.usage, expected=6)
    assert replay_detailed([e for _, e in topic_last]).conflicts == 1
