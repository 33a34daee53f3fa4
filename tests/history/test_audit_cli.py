from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.history import verify as verify_module
from compstream.history.rows import DigestRow, HistoryBatch
from compstream.history.verify import Finding, Report, period_digest

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
    _tamper_alice_seq_4(ch_store)
    result = _run("verify", "--dsn", chdb_dsn, "--database", ch_store.database, "--engineer", "alice")
    assert result.exit_code == 1, result.output
    line = next(line for line in result.output.splitlines() if "edited" in line)
    assert "alice" in line and " 4 " in line
    # Replay agrees the stored amount no longer follows from the events.
    assert "replay_mismatch" in result.output


def _tamper_alice_seq_4(ch_store):
    ch_store.command(
        f"ALTER TABLE {ch_store.database}.postings UPDATE amount_nanos = 1 WHERE engineer_id = 'alice' AND seq = 4",
        settings={"mutations_sync": 1},
    )


def test_verify_json_clean(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    result = _run("verify", "--json", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["clean"] is True and doc["findings"] == []
    assert doc["summary"] == {"engineers": 2, "postings": 18, "findings": 0, "findings_listed": 0, "by_kind": {}}
    assert doc["scope"] == {"engineer": None, "period": None, "replay": True}


def test_verify_json_lists_findings_and_counts_kinds(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    _tamper_alice_seq_4(ch_store)
    result = _run("verify", "--json", "--engineer", "alice", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)  # stdout is exactly one document, whatever COLUMNS is
    assert doc["clean"] is False and doc["scope"]["engineer"] == "alice"
    kinds = {(f["engineer_id"], f["seq"], f["kind"]) for f in doc["findings"]}
    assert ("alice", 4, "edited") in kinds and ("alice", 4, "replay_mismatch") in kinds
    counted: dict[str, int] = {}
    for f in doc["findings"]:
        counted[f["kind"]] = counted.get(f["kind"], 0) + 1
    assert doc["summary"]["by_kind"] == counted
    assert doc["summary"]["findings"] == doc["summary"]["findings_listed"] == len(doc["findings"])
    assert doc["summary"]["postings"] == len(ch_store.postings_for("alice"))


def test_verify_json_store_wide_finding_has_null_engineer_and_seq(ch_store, chdb_dsn):
    ch_store.append_batch(data.full_batch(), "cli")
    bogus = DigestRow("2026-09", "0" * 64, 2, 5, data.t(10, 1))
    ch_store.append_batch(HistoryBatch(digests=(bogus,)), "d1")
    result = _run("verify", "--json", "--no-replay", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 1, result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["kind"] == "digest_mismatch" and finding["engineer_id"] is None and finding["seq"] is None
    assert "2026-09" in finding["detail"]


def test_verify_json_error_is_a_document_too(ch_store, chdb_dsn):
    result = _run("verify", "--json", "--period", "2026-13", "--dsn", chdb_dsn, "--database", ch_store.database)
    assert result.exit_code == 2
    assert "YYYY-MM" in json.loads(result.stdout)["error"]


def test_report_counts_findings_past_the_cap(monkeypatch):
    monkeypatch.setattr(verify_module, "FINDINGS_MAX", 3)
    report = Report()
    report.add(Finding("e", seq, "edited" if seq % 2 else "deleted", "x") for seq in range(1, 6))
    doc = report.to_dict()
    assert doc["summary"]["findings"] == 5 and doc["summary"]["findings_listed"] == 3 == len(doc["findings"])
    assert doc["summary"]["by_kind"] == {"deleted": 2, "edited": 3}


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
