"""Busy books on the real broker. Engineers with hundreds of usage events a
day get their past days' ids sealed into changelog segments of their own
(worker/book_changelog.py); engineers with thousands get books of several
hundred KB, written as a head and parts: pending usage by hour, ids by
bucket and by sealed day (worker/book_parts.py). A worker killed
mid-backlog restores them from the changelog; duplicates republished after
the restart (of sealed days; of usage still pending) are recognised;
balances and history equal the replay."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from compstream.synth import START, generate
from support.checks import (
    assert_history_exact,
    balance_mismatches,
    changelog_keys,
    expected_counts,
    history_figures,
    lost_events,
    sentinels,
    wait_balances,
    wait_quiet,
)
from support.faults import SESSION_TIMEOUT_S, ledger_only
from support.worker import WorkerProcess

pytestmark = pytest.mark.kafka
PARTITIONS = 4  # as the `topics` fixture made them


def test_sealed_days_survive_a_kill_and_still_catch_duplicates(kafka_bootstrap, topics, tmp_path, reliability):
    # 4 engineers x ~400 usage events a day for 3 days, 1 h lateness: each
    # day past the watermark holds more than SEAL_RECORDS_MIN (64) ids.
    events = ledger_only(generate(engineers=4, usage_events=4_800, seed=93, usage_span=timedelta(days=3)))
    cut = START + timedelta(days=2, hours=12)
    run = _kill_restore_republish(kafka_bootstrap, topics, tmp_path, events, cut, lateness_s=3600, seed=93,
                                  again=lambda usage, rng: rng.sample(
                                      [e for e in usage if e.event_time < START + timedelta(days=2)], 300))
    segments = [k for k in run["changelog_keys"] if b"\x1f" in k]
    assert segments, "no book was sealed: the scenario does not test segments"
    _record(reliability, run, events, order=21, scenario="busy books: sealed days, kill -9, duplicates of sealed days",
            faults="SIGKILL mid-backlog, a restart, 300 duplicates of sealed days",
            notes=f"{len(set(segments))} segment records in the changelog")


def test_books_in_parts_survive_a_kill_and_still_catch_duplicates(kafka_bootstrap, topics, tmp_path, reliability):
    # 4 engineers x ~8,000 usage events a day for 1.5 days, 6 h lateness:
    # ~2,000 pending events a book (~250 KB), past book_parts.SPLIT_BYTES_MIN.
    events = ledger_only(generate(engineers=4, usage_events=48_000, seed=94, usage_span=timedelta(hours=36)))
    cut = START + timedelta(hours=30)

    def again(usage, rng):  # still pending at the restart (pending hours, buckets), and final ones
        pending = [e for e in usage if e.event_time >= cut - timedelta(hours=5)]
        final = [e for e in usage if e.event_time < cut - timedelta(hours=8)]
        return rng.sample(pending, 200) + rng.sample(final, 100)

    run = _kill_restore_republish(kafka_bootstrap, topics, tmp_path, events, cut, lateness_s=6 * 3600, seed=94,
                                  again=again)
    hours = {k for k in run["changelog_keys"] if b"\x1fp" in k}
    buckets = {k for k in run["changelog_keys"] if b"\x1fb" in k}
    assert hours and buckets, "no book was written in parts: the scenario does not test them"
    _record(reliability, run, events, order=22, scenario="books in parts: kill -9, duplicates of pending usage",
            faults="SIGKILL mid-backlog, a restart, 200 duplicates of pending usage, 100 of final usage",
            notes=f"{len(hours)} pending-slot and {len(buckets)} id-bucket part records in the changelog")


def _kill_restore_republish(bootstrap, topics, tmp_path, events, cut, lateness_s: int, seed: int, again) -> dict:
    """Publish the events before `cut` (usage by time; HR events all), start
    a worker, kill it mid-backlog, restart it; once caught up restart it
    again (a restore from the changelog); then republish `again(...)` with
    the rest, and close every window with sentinels."""
    rng = random.Random(seed)
    group = f"busy-{topics.prefix}"
    worker = WorkerProcess(tmp_path / "w", bootstrap, topics, group=group, lateness_s=lateness_s,
                           partitions=PARTITIONS,
                           extra_env={"COMPSTREAM_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
                                      "COMPSTREAM_BATCH_EVENTS_MAX": "200"})  # many batches: many book writes
    first = [e for e in events if e.type != "usage" or e.event_time < cut]
    rest = events[len(first):]
    assert [e.event_id for e in events[:len(first)]] == [e.event_id for e in first]  # usage in time order
    publish_events(first, bootstrap, topics)  # a backlog when the worker starts
    worker.start()
    delay = rng.uniform(SESSION_TIMEOUT_S + 2, SESSION_TIMEOUT_S + 6)  # joined and mid-backlog
    time.sleep(delay)
    worker.kill()
    worker.start()
    wait_balances(bootstrap, topics.balances, expected_counts(first), 240, worker)
    keys = changelog_keys(bootstrap, f"{group}-books-changelog", PARTITIONS)
    worker.stop()
    worker.start()  # a restore from heads, segments and parts
    republished = again([e for e in first if e.type == "usage"], rng)
    t0 = time.monotonic()
    publish_events(republished + rest, bootstrap, topics)
    balances = wait_balances(bootstrap, topics.balances, expected_counts(events), 240, worker)
    recover_s = time.monotonic() - t0
    ticks = sentinels(START + timedelta(days=10), PARTITIONS)
    publish_events(ticks, bootstrap, topics)
    wait_balances(bootstrap, topics.balances, expected_counts(ticks), 60, worker)
    wait_quiet(bootstrap, topics.balances, quiet_s=3, timeout_s=60)
    assert worker.stop() == 0, worker.log_tail()
    figures = history_figures(worker.env["COMPSTREAM_CLICKHOUSE_DSN"], events + ticks,
                              ticks[0].occurred_at - timedelta(seconds=lateness_s))
    return {"balances": balances, "figures": figures, "recover_s": recover_s, "delay": delay,
            "changelog_keys": keys}


def _record(reliability, run: dict, events, order: int, scenario: str, faults: str, notes: str) -> None:
    balances, figures = run["balances"], run["figures"]
    bad = balance_mismatches(balances, events)
    reliability.record(
        order=order, scenario=scenario, events=len(events), faults=faults,
        lost=lost_events(balances, expected_counts(events), figures),
        duplicated=figures["event_rows"] - figures["event_ids"], mismatched=len(bad), recover_s=run["recover_s"],
        notes=f"kill after {run['delay']:.1f} s; {notes}", figures=figures,
    )
    assert bad == []
    assert_history_exact(figures)
    assert {e: b["events_applied"] for e, b in balances.items()} == expected_counts(events)
