from __future__ import annotations

from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.history.verify import period_digest

from . import data

runner = CliRunner()


def _run(*args, env=None):
    return runner.invoke(app, ["audit", *args], env={"COLUMNS": "200", **(env or {})})


def test_verify_clean_exits_zero(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    result = _run("verify", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 0, result.output
    assert "clean" in result.output and "2 engineer(s), 18 posting(s)" in result.output


def test_verify_tampered_exits_one_with_table(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    ch_store.command(
        f"ALTER TABLE {ch_store.database}.postings UPDATE amount_nanos = 1 WHERE engineer_id = 'alice' AND seq = 4",
        settings={"mutations_sync": 1},
    )
    result = _run("verify", "--dsn", chdb_dsn, "--database", ch_store.database, "--engineer", "alice")
    assert result.exit_code == 1, result.output
    line = next(line for line in result.output.splitlines() if "edited" in line)
    assert "alice" in line and " 4 " in line
    # Replay agrees the stored amount no longer follows from the events.
    assert "replay_mismatch" in result.output


def test_verify_period_scopes_engineers(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    result = _run("verify", "--dsn", chdb_dsn, "--database", ch_store.database, "--period", "2026-08")
    assert result.exit_code == 0 and "0 engineer(s)" in result.output


def test_digest_prints_and_stores(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    result = _run("digest", "--period", "2026-09", "--no-publish", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 0, result.output
    expected = period_digest(ch_store, "2026-09").digest
    assert expected in result.output
    assert [d.digest for d in ch_store.digests("2026-09")] == [expected]


@pytest.mark.kafka
def test_digest_is_published_on_the_digests_topic(ch_store, chdb_dsn, kafka_bootstrap, topics):
    from compstream.readback import read_records

    ch_store.append_batch(data.full_batch(), "cli")
    env = {"COMPSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "COMPSTREAM_TOPIC_PREFIX": topics.prefix}
    result = _run("digest", "--period", "2026-09", "--dsn", chdb_dsn, "--database", ch_store.database, env=env)
    assert result.exit_code == 0, result.output
    records = read_records(kafka_bootstrap, topics.digests, until=lambda r: len(r) >= 1, timeout_s=30)
    assert len(records) == 1
    key, name, record = records[0]
    assert (key, name) == (b"2026-09", "PeriodDigest")
    assert record["digest"] == period_digest(ch_store, "2026-09").digest == ch_store.digests("2026-09")[0].digest


def test_digest_refuses_open_period_and_bad_input(ch_store, chdb_dsn):
    this_month = datetime.now(timezone.utc).strftime("%Y-%m")  # always still open
    result = _run("digest", "--period", this_month, "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 2 and "open until" in result.output
    result = _run("verify", "--period", "2026-13", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 2 and "YYYY-MM" in result.output
    assert ch_store.digests() == []
