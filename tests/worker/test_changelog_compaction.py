"""The books changelog is compacted on a live topic (broker/topics.py,
CHANGELOG): after many batches over few engineers the cleaner leaves about one
record per key, so a restarted transactional worker restores from far fewer
records than were written, and its balances still equal the offline replay
(the latest value of every book survived the cleaning)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from compstream.publish import publish_events
from support.checks import balance_mismatches, changelog_keys, expected_counts, sentinels, wait_balances
from support.worker import WorkerProcess
from worker.core.scenario import LATENESS_S, START, scenario

pytestmark = pytest.mark.kafka
PARTITIONS = 4
NUDGE_EVERY_S = 3.0  # a segment rolls on the first append after segment.ms: keep appending


def _changelog_records(bootstrap: str, topic: str) -> int:
    """Keyed records a restore would read now."""
    return len(changelog_keys(bootstrap, topic, PARTITIONS))


def test_restart_restores_from_the_compacted_changelog(kafka_bootstrap, topics, tmp_path):
    published = scenario(seed=31, engineers=4, usage_per_engineer=200, duplicates=5)
    events = [e for _, e in published]
    backlog, nudges = events[:600], events[600:]
    group = f"compact-{topics.prefix}"
    changelog = f"{group}-books-changelog"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topics, group=group, lateness_s=LATENESS_S,
                           partitions=PARTITIONS,
                           extra_env={"COMPSTREAM_ENGINE": "transactional", "COMPSTREAM_LEADERBOARDS": "off",
                                      "COMPSTREAM_BATCH_EVENTS_MAX": "10"}).start()  # ~60 transactions
    publish_events(backlog, kafka_bootstrap, topics)
    wait_balances(kafka_bootstrap, topics.balances, expected_counts(backlog), 180, worker)
    written = sent = 0
    deadline = time.monotonic() + 240  # segment.ms (60 s) + the cleaner's backoff (15 s), with room
    while True:
        now = _changelog_records(kafka_bootstrap, changelog)
        written = max(written, now)
        if written >= 80 and now * 4 < written:
            break
        assert time.monotonic() < deadline, f"changelog never compacted: {now} records of {written} written"
        assert sent < len(nudges), "ran out of events to append before the changelog was compacted"
        publish_events(nudges[sent:sent + 1], kafka_bootstrap, topics)
        sent += 1
        assert worker.alive(), worker.diagnosis()
        time.sleep(NUDGE_EVERY_S)
    assert worker.stop() == 0, worker.diagnosis()

    log_size = worker.log_path.stat().st_size
    worker.start()

    def restored() -> list[tuple[int, int]]:
        text = worker.log_path.read_text(errors="replace")[log_size:]
        found = re.findall(r"partition \d+ restored: (\d+) books from (\d+) changelog records", text)
        return [(int(b), int(r)) for b, r in found] if len(found) >= PARTITIONS else []

    counts = worker.wait_until(restored, 120, "every partition restored")
    books, records = sum(b for b, _ in counts), sum(r for _, r in counts)
    assert 0 < books <= len({e.engineer_id for e in events}), counts
    assert records * 4 < written, (records, written)  # far fewer than written: about one per key
    # The restored books carry on: the rest of the events, then a tick per
    # partition past them all; every balance must equal the replay.
    ticks = sentinels(START + timedelta(days=90), PARTITIONS)
    publish_events(nudges[sent:] + ticks, kafka_bootstrap, topics)
    balances = wait_balances(kafka_bootstrap, topics.balances, expected_counts(events + ticks), 180, worker)
    assert worker.stop() == 0, worker.diagnosis()
    assert balance_mismatches(balances, events + ticks) == []
