"""Late usage through the worker's leaderboard stages (no Kafka): closed
windows are revised, published with `revision` / `late_adjusted`, every
revision goes to history, and restarts or re-delivery make no revision."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from test_lb_stages import LABELS, P, _board_rows, _messages

from compstream.domain.events import Usage
from compstream.domain.leaderboard import LeaderboardConfig
from compstream.synth import generate
from compstream.worker.leaderboards.merge import MergeStage
from compstream.worker.leaderboards.partition import PartitionStage
from compstream.worker.processor import partition_of
from lb_kafka import expected_boards

CFG = LeaderboardConfig(k=5, lateness=timedelta(hours=6), min_team_size=2)


class Run:
    def __init__(self):
        self.clock = 10**15
        self.stage, self.merge = PartitionStage(CFG, LABELS), MergeStage(CFG, P)
        self.stage_records: dict = {}
        self.merge_records: dict = {}
        self.published: dict = {}
        self.history: dict = {}  # token -> rows, as the history's dedup token keeps them
        self.late = self.too_late = 0
        for p in range(P):
            self.stage.restore(p, [], self.tick())
        self.merge.restore([])

    def tick(self) -> int:
        self.clock += 1_000
        return self.clock

    def ship(self, messages) -> int:
        """Merge one batch; returns how many history snapshots it wrote."""
        out = self.merge.process([json.dumps(m.to_dict()).encode() for m in messages])
        for key, value in out.publish:
            self.published[key.decode()] = None if value is None else json.loads(value)
        for key, value in out.records.items():
            if value is None:
                self.merge_records.pop(key, None)
            else:
                self.merge_records[key] = value
        for token, rows in out.history:
            self.history.setdefault(token, rows)
        return len(out.history)

    def feed(self, messages, batch: int) -> None:
        for i in range(0, len(messages), batch):
            out = self.stage.process(messages[i:i + batch], self.tick())
            self.late += out.late
            self.too_late += out.too_late
            for recs in out.records.values():
                self.stage_records.update(recs)
            self.ship(out.messages)

    def restart_partitions(self) -> int:
        self.stage = PartitionStage(CFG, LABELS)
        written = 0
        for p in range(P):
            items = [(k, v) for k, v in self.stage_records.items() if k.startswith(f"e|{p}|") or k == f"m|{p}"]
            written += self.ship(self.stage.restore(p, items, self.tick()))
        return written

    def restart_merge(self) -> None:
        self.merge = MergeStage(CFG, P)
        self.merge.restore(sorted(self.merge_records.items()))


def _events():
    events = [e for e in generate(engineers=30, usage_events=700, seed=11, with_hr=True, span_days=9, teams=3)
              if e.type in ("usage", "team_assigned")]
    teams = [e for e in events if not isinstance(e, Usage)]
    usage = sorted((e for e in events if isinstance(e, Usage)), key=lambda u: u.occurred_at)
    rnd = random.Random(5)
    # Out of order by days: blocks of the month arrive in a shuffled order.
    blocks = [usage[i:i + 50] for i in range(0, len(usage), 50)]
    rnd.shuffle(blocks)
    arrival = [u for b in blocks for u in b]
    last = usage[-1].occurred_at
    # One usage per partition two days after the last: closes every day window.
    closers, seen = [], set()
    for u in usage:
        p = partition_of(u.engineer_id, P)
        if p not in seen:
            seen.add(p)
            closers.append(Usage(f"close-{p}", u.engineer_id, "openai", "gpt-4o", last + timedelta(days=2),
                                 1, 0, 0, 0, 0))
    return teams, arrival, closers


def test_late_usage_revises_closed_boards_exactly_once_per_batch_and_history_keeps_each_revision():
    teams, arrival, closers = _events()
    messages = _messages(teams + arrival + closers)
    run = Run()
    third = len(messages) // 3
    run.feed(messages[:third], batch=53)
    assert run.restart_partitions() == 0  # a restart re-sends every window: no revision
    run.feed(messages[third // 2:2 * third], batch=41)  # Kafka re-delivers from before the crash
    run.restart_merge()
    run.feed(messages[2 * third:], batch=67)

    assert run.late > 0 and run.too_late == 0  # the test exercises late usage, all within retention
    expected = expected_boards(teams + arrival + closers, CFG.k, CFG.min_team_size)
    for key, rows in expected.items():
        assert _board_rows(run.merge, key) == rows, key
        assert run.published[key]["entries"] == run.merge.lookup(*_split(key))["entries"], key

    revised = {k: b for k, b in run.published.items() if b["late_adjusted"]}
    assert revised and all(b["revision"] > 0 and b["final"] for b in revised.values())
    assert all(b["revision"] == 0 for b in run.published.values() if not b["late_adjusted"])

    # History: every revision under its own token; the last one is the board.
    by_window: dict = {}
    for rows in run.history.values():
        for r in rows:
            by_window.setdefault((r.window_kind, r.window_start), {}).setdefault(r.revision, []).append(r)
    for key, board in run.published.items():
        if not board["final"]:
            continue
        revisions = by_window[(board["window_kind"], _start(board))]
        assert max(revisions) == board["revision"], key
        assert sorted(revisions) == list(range(min(revisions), board["revision"] + 1)), key
        last = [(r.subject, r.value) for r in sorted(revisions[board["revision"]], key=lambda r: r.rank)
                if r.dimension == board["dimension"]]
        assert last == [(e["id"], e["value"]) for e in board["entries"]], key

    # Everything re-delivered once more: nothing changes, no revision.
    before = dict(run.published)
    history = len(run.history)
    run.feed(messages, batch=97)
    assert run.published == before and len(run.history) == history
    assert run.restart_partitions() == 0


def test_late_usage_past_retention_is_too_late_and_the_board_is_tombstoned():
    config = LeaderboardConfig(k=5, lateness=timedelta(hours=6), retention=timedelta(days=1))
    run = Run()
    run.stage, run.merge = PartitionStage(config, LABELS), MergeStage(config, 1)
    run.stage.restore(0, [], run.tick())
    run.merge.restore([])
    from compstream.worker.leaderboards import partition as leaderboard_partition

    t0 = leaderboard_partition.EPOCH.replace(year=2026, month=10, day=5)

    def use(i, day, hour=12):
        return Usage(f"u{i}", "eng-1", "openai", "gpt-4o", t0 + timedelta(days=day, hours=hour), 10, 0, 0, 0, 0)

    msgs = _messages([use(0, 0), use(1, 1), use(2, 0, 20), use(3, 3), use(4, 0, 5)])
    msgs = [m.__class__(m.topic, 0, m.offset, m.key, m.value, m.timestamp) for m in msgs]  # one partition
    run.feed(msgs[:2], batch=2)  # day 0 closes
    run.feed(msgs[2:3], batch=1)  # late, within retention: revision 1
    day0 = f"day:{t0.date().isoformat()}|engineer|tokens"
    assert run.published[day0]["revision"] == 1 and run.published[day0]["entries"][0]["value"] == 20
    run.feed(msgs[3:4], batch=1)  # day 0 closed 2 d ago > retention: dropped, tombstoned
    assert run.published[day0] is None
    assert not any(k.startswith(f"w|day:{t0.date().isoformat()}|") or k.startswith(f"c|day:{t0.date()}")
                   for k in run.merge_records)
    run.feed(msgs[4:], batch=1)
    assert run.too_late >= 1 and run.published[day0] is None


def _split(key):
    from compstream.domain.leaderboard import Metric, Scope
    window, scope, metric = key.split("|")
    return window, Scope(scope), Metric(metric)


def _start(board):
    from compstream.domain.events import parse_time
    return parse_time(board["start"], "start")
