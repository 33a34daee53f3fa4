"""Create (idempotently) and delete the project's Kafka topics.

The source topics are the event store, so they keep everything forever;
derived state topics are compacted so a restart can rebuild from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple
from typing import NamedTuple

import kafka.errors as kerr
from kafka.admin import KafkaAdminClient

from compstream.broker.jars import BrokerError
from compstream.config import Topics

FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
COMPACT = {"cleanup.policy": "compact"}
# State changelogs are read whole on every restore, so the cleaner has to keep
# up with a live topic; with the defaults (1 GiB / 7-day segments) it never
# does: it only cleans closed segments, so every record ever written stays in
# the one active segment (633,028 records read for 10k books, docs/benchmarks.md).
CHANGELOG = {
    **COMPACT,
    # Close a segment after a minute of writes (the roll happens on the next
    # append): a restore reads at most about a minute of uncompacted writes
    # beyond one record per key, and the cleaner's 15 s backoff is the same order.
    "segment.ms": "60000",
    # ... or after 16 MiB, whichever first (>= the 1 MiB message.max.bytes, so
    # any record fits; small enough that a burst does not pile up uncleaned).
    "segment.bytes": str(16 * 1024 * 1024),
    # Clean once a tenth of the log is superseded records (default half): the
    # compacted part is about one record per key, so cleaning it is cheap and
    # a restore reads at most ~1.1 records per key from the cleanable part.
    "min.cleanable.dirty.ratio": "0.1",
    # Kept at the defaults on purpose: min.compaction.lag.ms 0 (the latest value
    # per key always survives a clean), delete.retention.ms 1 day (a tombstone
    # stays readable that long, then the key is simply absent: same restore).
}


class TopicSpec(NamedTuple):
    partitions: int
    configs: dict[str, str]


def topic_specs(topics: Topics, partitions: int) -> dict[str, TopicSpec]:
    """Name -> partitions and configs for every project topic."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return {
        topics.usage: TopicSpec(partitions, dict(FOREVER)),
        topics.grants: TopicSpec(partitions, dict(FOREVER)),
        topics.balances: TopicSpec(partitions, dict(COMPACT)),
        # One partition: a single writer keeps the global ranking totally ordered.
        topics.leaderboards: TopicSpec(1, dict(COMPACT)),
        topics.leaderboard_candidates: TopicSpec(1, {}),
        topics.alerts: TopicSpec(partitions, {}),
        topics.digests: TopicSpec(partitions, {}),
        topics.dead_letters: TopicSpec(partitions, {}),
    }


def _admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    ms = int(timeout_s * 1000)
    try:
        return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compstream-topics",
                                bootstrap_timeout_ms=ms, request_timeout_ms=ms)
    except kerr.KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap} within {timeout_s:.0f}s "
                          f"({exc.__class__.__name__}); is the broker running?") from exc


def changelog_specs(app_id: str, partitions: int) -> dict[str, TopicSpec]:
    """The worker's Faust table changelogs. Created up front: when Faust creates
    them itself, the first table write can race the metadata refresh and fail
    with PartitionsMismatch ("changelog has 0 partitions")."""
    return {
        f"{app_id}-books-changelog": TopicSpec(partitions, dict(CHANGELOG)),
        f"{app_id}-leaderboard-partitions-changelog": TopicSpec(partitions, dict(CHANGELOG)),
        f"{app_id}-leaderboard-merge-changelog": TopicSpec(1, dict(CHANGELOG)),
    }


def ensure_topics(
    bootstrap: str,
    topics: Topics,
    partitions: int,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create the missing project topics; returns name -> "created" | "exists".

    An existing topic with a different partition count is an error: Faust
    joins the source topics by key, which needs equal partitioning.
    """
    return ensure_specs(bootstrap, topic_specs(topics, partitions), replication_factor, timeout_s)


def ensure_specs(
    bootstrap: str,
    specs: dict[str, TopicSpec],
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create the missing topics of `specs`; check the existing ones' partitions."""
    admin = _admin(bootstrap, timeout_s)
    try:
        existing = {t["name"]: len(t.get("partitions") or [])
                    for t in admin.describe_topics(list(specs))
                    if t.get("error_code", 0) == 0}
        missing = {n: s for n, s in specs.items() if n not in existing}
        result = {n: "exists" for n in existing}
        if missing:
            response = admin.create_topics(
                {name: {"num_partitions": s.partitions, "replication_factor": replication_factor,
                        "configs": s.configs} for name, s in missing.items()},
                timeout_ms=int(timeout_s * 1000), raise_errors=False)
            for t in response["topics"]:
                err = kerr.for_code(t["error_code"])
                if err is kerr.TopicAlreadyExistsError:  # a concurrent creator won the race
                    result[t["name"]] = "exists"
                elif err is not kerr.NoError:
                    raise BrokerError(f"creating topic {t['name']} failed: {err.__name__}: "
                                      f"{t.get('error_message') or ''}".rstrip(": "))
                else:
                    result[t["name"]] = "created"
            # CreateTopics returns before leaders are elected; producers that
            # start right after us must not see LEADER_NOT_AVAILABLE.
            try:
                admin.wait_for_topics(list(missing), timeout_ms=int(timeout_s * 1000))
            except kerr.KafkaTimeoutError as exc:
                raise BrokerError(f"topics not ready after {timeout_s:.0f}s: {exc}") from exc
        for name, have in existing.items():
            if have != specs[name].partitions:
                raise BrokerError(f"topic {name} has {have} partitions, expected "
                                  f"{specs[name].partitions}; delete it or use that count")
        return result
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Topics | Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics (missing ones are ignored). Meant for tests and resets."""
    names = list(astuple(names)) if isinstance(names, Topics) else list(names)
    if not names:
        return
    admin = _admin(bootstrap, timeout_s)
    try:
        response = admin.delete_topics(names, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        for t in response["topics"]:
            err = kerr.for_code(t["error_code"])
            if err not in (kerr.NoError, kerr.UnknownTopicOrPartitionError):
                raise BrokerError(f"deleting topic {t.get('name')} failed: {err.__name__}")
    finally:
        admin.close()
