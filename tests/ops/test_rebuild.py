"""`compstream rebuild --yes --stop --start` end to end with a real worker:
balances after the rebuild equal those before, the history holds every event
exactly once, and rebuild refuses to run under a live worker."""

from __future__ import annotations

import json
import os
import random
import re
import time
from unittest import mock

import pytest

from compstream.config import Settings
from compstream.domain.events import LEDGER_EVENT_TYPES
from compstream.history import open_history
from compstream.publish import publish_events
from compstream.readback import latest_balances, read_records
from compstream.synth import generate
from compstream.worker.run import running_pid
from ops.helpers import LATENESS_S, PARTITIONS, env_for, expected_counts, run, stop_pid, wait_balances
from support.kafka import free_port
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka


def test_rebuild_restores_the_same_balances_and_history_stays_exactly_once(kafka_bootstrap, topics, tmp_path):
    events = [e for e in generate(engineers=10, usage_events=200, seed=5) if e.type in LEDGER_EVENT_TYPES]
    random.Random(2).shuffle(events)
    group = f"g-{topics.prefix}"
    data_dir = tmp_path / "w"
    worker = WorkerProcess(data_dir, kafka_bootstrap, topics, group=group,
                           lateness_s=LATENESS_S, partitions=PARTITIONS).start()
    # The rebuilt worker gets its own web port (the first one's may linger).
    env = env_for(kafka_bootstrap, topics, data_dir, group, COMPSTREAM_WEB_PORT=str(free_port()))
    with mock.patch.dict(os.environ, env):
        settings = Settings.from_env()
    new_pid = None
    try:
        publish_events(events, kafka_bootstrap, topics)
        before = wait_balances(kafka_bootstrap, topics, expected_counts(events), worker)
        published = len(read_records(kafka_bootstrap, topics.balances, timeout_s=0))
        worker.wait_until(lambda: running_pid(settings), 30, "pid file")
        r = run(["rebuild", "--yes"], env)
        assert r.exit_code == 2 and "stop it or pass --stop" in r.output

        r = run(["rebuild", "--yes", "--stop", "--start", "--timeout", "120", "--settle", "30"], env)
        new_pid = running_pid(settings)
        assert r.exit_code == 0, r.output + "\n" + worker.log_tail()
        assert f"{group}-books-changelog" in r.output and "caught up" in r.output
        assert not worker.alive() and new_pid is not None and new_pid != worker.proc.pid
        # The rebuilt worker published every engineer's balance anew.
        assert len(read_records(kafka_bootstrap, topics.balances, timeout_s=0)) >= published + len(before)
        after = latest_balances(kafka_bootstrap, topics.balances, timeout_s=5)
        assert set(after) == set(before)
        for engineer, record in before.items():
            assert after[engineer] == record, engineer
    finally:
        # Also when `rebuild` raised after starting its worker (new_pid unset):
        # that process is not a WorkerProcess, so nothing else would stop it.
        pid = new_pid if new_pid is not None else running_pid(settings)
        if pid is not None and pid != worker.proc.pid:
            stop_pid(pid)
        worker.stop()

    store = open_history(env["COMPSTREAM_CLICKHOUSE_DSN"])
    try:
        counts = store.event_id_counts()
        assert counts.rows == counts.distinct == len({e.event_id for e in events})
    finally:
        store.close()


@pytest.mark.parametrize("engine", ["transactional", "faust"])
def test_rebuild_takes_the_streams_decisions_again(kafka_bootstrap, topics, tmp_path, engine):
    # A day-old export applied late live (after the grant's expiry was final:
    # overdraft). The rebuild reads the whole backlog at once, where, judged
    # again, it would be on time and draw on the grant (test_late_diff). It
    # takes the first decisions from the history topic instead
    # (worker/recorded_late.py): the balances stay what history's postings
    # and the statements say, and `rebuild` and `diff` are clean.
    from datetime import datetime, timedelta, timezone

    from compstream.domain.events import GrantIssued, Usage

    day = datetime(2026, 10, 10, tzinfo=timezone.utc)
    grants = [GrantIssued(f"g-{e}", e, f"G-{e}", 20 * 10**9, day - timedelta(days=5), day + timedelta(hours=2),
                          "allowance") for e in ("ada", "ken")]
    openai = [Usage(f"oa-{e}-{h}", e, "openai", "gpt-4o", day + timedelta(hours=h), 10, 10, 0, 0, 3 * 10**9)
              for e in ("ada", "ken") for h in range(0, 24, 4)]
    anthropic = [Usage(f"an-{e}-{h}", e, "anthropic", "claude", day - timedelta(days=1, hours=-h), 10, 10, 0, 0,
                       2 * 10**9) for e in ("ada", "ken") for h in range(0, 24, 6)]
    lateness = str(6 * 3600)
    group = f"g-{topics.prefix}"
    data_dir = tmp_path / "w"
    worker = WorkerProcess(data_dir, kafka_bootstrap, topics, group=group, lateness_s=int(lateness),
                           partitions=PARTITIONS, extra_env={"COMPSTREAM_ENGINE": engine}).start()
    env = env_for(kafka_bootstrap, topics, data_dir, group, COMPSTREAM_WEB_PORT=str(free_port()),
                  COMPSTREAM_LATENESS_S=lateness, COMPSTREAM_ENGINE=engine)
    with mock.patch.dict(os.environ, env):
        settings = Settings.from_env()
    new_pid = None
    try:
        publish_events(grants + openai, kafka_bootstrap, topics)
        wait_balances(kafka_bootstrap, topics, {"ada": 7, "ken": 7}, worker)
        publish_events(anthropic, kafka_bootstrap, topics)
        before = wait_balances(kafka_bootstrap, topics, {"ada": 11, "ken": 11}, worker)
        assert {e: before[e]["expired_nanos"] for e in before} == {"ada": 17 * 10**9, "ken": 17 * 10**9}
        worker.wait_until(lambda: running_pid(settings), 30, "pid file")
        r = run(["rebuild", "--yes", "--stop", "--start", "--timeout", "120", "--settle", "30"], env)
        new_pid = running_pid(settings)
        assert r.exit_code == 0, r.output + "\n" + worker.log_tail()
        said = " ".join(r.output.split())
        assert "the stream's decisions kept for the rebuilt books: 8 late decisions" in said, r.output
        # The stream's positions on the source partitions it read (ada's and ken's, both topics):
        # below them the rebuild refuses only what the stream did.
        positions = re.search(r"0 refusals and the positions of (\d+) source partitions", said)
        assert positions and 2 <= int(positions.group(1)) <= 2 * PARTITIONS, r.output
        # Caught up, every decision is applied and committed: the file is retired, so a
        # later restart (or lateness change) no longer depends on it.
        assert not (data_dir / "recorded-late.json").exists()
        assert (data_dir / "recorded-late.taken.json").exists()
        assert "the stream's decisions are all taken (file moved to" in " ".join(r.output.split()), r.output
        # The rebuilt worker (holding every partition) found them all taken itself, and let them go.
        log_path, deadline = data_dir / "worker.log", time.monotonic() + 30
        assert "taking 8 late decisions of the stream again" in log_path.read_text(errors="replace")
        while "its decisions are all taken" not in log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        after = latest_balances(kafka_bootstrap, topics.balances, timeout_s=5)
        money = [f for f in before["ada"] if f.endswith("_nanos")]
        assert {e: {f: after[e][f] for f in money} for e in after} == \
            {e: {f: before[e][f] for f in money} for e in before}, after
        r = run(["diff", "--json"], env)
        assert r.exit_code == 0, r.output
        report = json.loads(r.stdout)
        assert report["equal"] and report["rejudged_engineers"] == 0 and report["statement_differences"] == []
    finally:
        pid = new_pid if new_pid is not None else running_pid(settings)
        if pid is not None and pid != worker.proc.pid:
            stop_pid(pid)
        worker.stop()
