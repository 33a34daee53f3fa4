"""End to end on the real broker and worker: HR import + policy + roster ->
grants topic -> `compstream worker` -> balances equal the offline replay of
the source topics, re-runs publish nothing, a roster change publishes only
the difference, and the statement names the policy and rule of each grant."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.config import Settings
from compstream.domain.events import Usage
from compstream.history import open_history
from compstream.hr.history import from_kafka
from compstream.publish import publish_events
from compstream.reports.statement import build_statement
from support.checks import (
    LONG_LATENESS_S,
    balance_mismatches,
    expected_counts,
    history_figures,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PARTITIONS = 4
USD = 10**9
HR_CSV = """type,engineer_id,effective_at,grant_id,amount_usd,team_id,opted_out,annual_cash_usd
team_assigned,ada,2026-10-01,,,platform,,
team_assigned,hedy,2026-10-12,,,platform,,
grant_issued,ken,2026-10-02,signing-ken,40,,,
cash_compensation,ada,2026-10-01,,,,,240000
leaderboard_privacy,grace,2026-10-10,,,,true,
"""


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _delivered(output: str) -> int:
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 3 and cells[1] == "delivered":
            return int(cells[2])
    raise AssertionError(f"no 'delivered' row in:\n{output}")


def test_policy_and_roster_to_balances_and_statement(kafka_bootstrap, topics, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPSTREAM_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("COMPSTREAM_TOPIC_PREFIX", topics.prefix)
    monkeypatch.setenv("COMPSTREAM_DATA_DIR", str(tmp_path / "cli"))
    settings = Settings.from_env()
    assert settings.topics.grants == topics.grants
    (tmp_path / "hr.csv").write_text(HR_CSV)
    issue = ["grants", "issue", "--period", "2026-10", "--policy", str(EXAMPLES / "policy.toml")]

    assert _delivered(_cli("hr", "import", str(tmp_path / "hr.csv"), "--roster", str(EXAMPLES / "roster.csv"))) == 5
    assert _delivered(_cli("hr", "import", str(tmp_path / "hr.csv"))) == 0  # re-import: nothing new
    first = _delivered(_cli(*issue, "--roster", str(EXAMPLES / "roster.csv")))
    assert first >= 8
    assert _delivered(_cli(*issue, "--roster", str(EXAMPLES / "roster.csv"))) == 0  # re-run: nothing new

    at = datetime(2026, 10, 28, 12, tzinfo=timezone.utc)
    usage = [Usage(f"use-{e}", e, "openai", "gpt", at, 1000, 500, 0, 0, cost * USD)
             for e, cost in (("ada", 120), ("ken", 90), ("hedy", 30), ("margaret", 180))]
    publish_events(usage, kafka_bootstrap, topics)
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=f"g-{topics.prefix}",
                           lateness_s=LONG_LATENESS_S, partitions=PARTITIONS).start()
    try:
        # ada leaves on Oct 20: only her lines change, as revocations (her bonus stays).
        changed = tmp_path / "roster.csv"
        changed.write_text((EXAMPLES / "roster.csv").read_text().replace(
            "ada,L5,platform,2024-03-01,", "ada,L5,platform,2024-03-01,2026-10-20"))
        assert _delivered(_cli(*issue, "--roster", str(changed))) == 3
        assert _delivered(_cli(*issue, "--roster", str(changed))) == 0
        events = from_kafka(settings, usage=True).events  # the offline replay's input: the source topics
        assert {e.type for e in events} >= {"grant_issued", "grant_revoked", "usage", "team_assigned"}
        balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events), 180, worker)
        assert balance_mismatches(balances, events) == []
        assert balances["ada"]["revoked_nanos"] > 0 and balances["ken"]["issued_nanos"] == 440 * USD
        # Then push the watermark past every expiry, so every posting is final
        # and in the history (the sweep runs in the ticks' batch).
        ticks = sentinels(datetime(2027, 9, 1, tzinfo=timezone.utc), PARTITIONS)
        publish_events(ticks, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics.balances, expected_counts(ticks), 120, worker)
        wait_quiet(kafka_bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    dsn = worker.env["COMPSTREAM_CLICKHOUSE_DSN"]
    figures = history_figures(dsn, events, ticks[0].occurred_at - timedelta(seconds=LONG_LATENESS_S))
    assert figures["engineers_with_wrong_postings"] == 0, figures
    store = open_history(dsn)
    try:
        doc = build_statement(store, "ada", "2026-10")
    finally:
        store.close()
    policy_lots = {lot["policy_rule"]: lot for lot in doc["lots"] if lot["policy"]}
    assert set(policy_lots) == {"base", "senior", "platform-pool", "launch-2026"}
    assert {lot["policy"] for lot in policy_lots.values()} == {"eng@1"}
    assert {rule for rule, lot in policy_lots.items() if lot["status"] == "revoked"} == {
        "base", "senior", "platform-pool"}
    assert {k["policy_rule"] for k in doc["granted_by_kind"]} == {"base", "senior", "platform-pool", "launch-2026"}
