"""Helpers for the leaderboard Kafka tests: JSON topic readers, expected boards."""

from __future__ import annotations

import json
import time
from datetime import datetime

from domain.leaderboard.lb_support import direct_board
from kafka import KafkaConsumer
from kafka.partitioner.default import murmur2

from compstream.domain.events import LeaderboardPrivacy, TeamAssigned, Usage
from compstream.domain.leaderboard import Metric, Scope, windows_for
from compstream.domain.leaderboard.boards import BOARD_KINDS

POLL_IDLE_MS = 1000


def partition(engineer: str, partitions: int) -> int:
    return (murmur2(engineer.encode()) & 0x7FFFFFFF) % partitions


def read_json(bootstrap: str, topic: str) -> list[tuple[str, dict | None]]:
    """Every (key, JSON value or None for a tombstone) on a topic, in order."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=POLL_IDLE_MS,
                             isolation_level="read_committed")  # as a downstream reader of the engine's transactions
    try:
        return [(m.key.decode(), None if m.value is None else json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()


def latest_boards(bootstrap: str, topic: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, value in read_json(bootstrap, topic):
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def watermark_partitions(bootstrap: str, topic: str) -> set[int]:
    return {v["partition"] for _, v in read_json(bootstrap, topic)
            if v is not None and v.get("type") == "leaderboard_watermark"}


def expected_boards(events, k: int, min_team: int, keys: set[str] | None = None) -> dict[str, list]:
    """board key -> [(id, value)] by brute force over all events."""
    usages = [e for e in events if isinstance(e, Usage)]
    hr = [e for e in events if isinstance(e, (TeamAssigned, LeaderboardPrivacy))]
    if keys is None:
        keys = {w.key for u in usages for w in windows_for(u.occurred_at)}
    return {
        f"{key}|{scope.value}|{metric.value}": direct_board(usages, hr, key, scope, metric, k, min_team)
        for key in keys for scope, metric in BOARD_KINDS
    }


def rows_of(board: dict) -> list[tuple[str, int]]:
    return [(e["id"], e["value"]) for e in board["entries"]]


def mismatches(expected: dict[str, list], got: dict[str, dict], final_except=("all",)) -> list[str]:
    """Human-readable differences (empty = all published boards as expected)."""
    out = []
    for key, rows in sorted(expected.items()):
        board = got.get(key)
        if board is None:
            out.append(f"{key}: not published")
        elif rows_of(board) != rows:
            out.append(f"{key}: got {rows_of(board)[:4]}… want {rows[:4]}…")
        elif key.split("|")[0] not in final_except and not board["final"]:
            out.append(f"{key}: not final")
    return out


def wait_for(predicate, timeout_s: float, what: str, workers=()):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        ok, last = predicate()
        if ok:
            return last
        for w in workers:
            if not w.alive():
                raise AssertionError(f"worker exited while waiting for {what}:\n{w.log_tail()}")
        time.sleep(1.0)
    tails = "\n---\n".join(w.log_tail(30) for w in workers)
    raise AssertionError(f"timed out waiting for {what}; last: {str(last)[:2000]}\n{tails}")


def sentinels(after: datetime, partitions: int) -> list[Usage]:
    """One zero usage per partition, far ahead, so every watermark passes
    every real window."""
    out, seen = [], set()
    for n in range(1000):
        engineer = f"clock-{n}"
        p = partition(engineer, partitions)
        if p not in seen:
            seen.add(p)
            out.append(Usage(f"tick-{engineer}", engineer, "none", "none", after, 0, 0, 0, 0, 0))
        if len(seen) == partitions:
            return out
    raise RuntimeError("could not cover every partition")


__all__ = ["Metric", "Scope"]
