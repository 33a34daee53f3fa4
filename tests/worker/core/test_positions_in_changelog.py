"""Positions live with the state: every checkpoint writes the next offset per
consumed topic-partition into the changelog after the books, a restore reads
them back ahead of the group's commits (which an engine without transactions
may have moved past unprocessed records), and the loop seeks there."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from compstream.codec import encode_event
from compstream.config import BOOK_BYTES_MAX, Topics
from compstream.domain.book import EngineerBook
from compstream.domain.events import GrantIssued, Usage
from compstream.worker.core.checkpoint import CoreConfig, LedgerCore, changelog_topic
from compstream.worker.core.cut import Cut, cut_key, decode_refusals, refused_key
from compstream.worker.core.loop import CheckpointLoop
from compstream.worker.core.memory import MemoryInput, MemoryLog, MemoryOutput
from compstream.worker.messages import SourceMessage
from compstream.worker.positions import position_key
from worker.core.scenario import Clock

TOPICS = Topics.with_prefix("pos")
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
CONFIG = CoreConfig(TOPICS, "w", 1, 6 * 3600, BOOK_BYTES_MAX)


def _log_with_events(n_usage: int) -> MemoryLog:
    log = MemoryLog(1)
    grant = GrantIssued("g-1", "alice", "g1", 10**12, T0, None, "allowance")
    log.append(TOPICS.grants, b"alice", encode_event(grant))
    for i in range(n_usage):
        usage = Usage(f"u-{i}", "alice", "openai", "gpt-4o", T0 + timedelta(minutes=i + 1), 100, 10, 0, 0, 10**6)
        log.append(TOPICS.usage, b"alice", encode_event(usage), timestamp=usage.event_time)
    return log


def _loop(log: MemoryLog, seed: int = 1) -> CheckpointLoop:
    source = MemoryInput(log, (TOPICS.usage, TOPICS.grants), random.Random(seed), T0)
    source.assign([(TOPICS.usage, 0), (TOPICS.grants, 0)])
    return CheckpointLoop(lambda: LedgerCore(CONFIG), source, MemoryOutput(log), idle_s=0, clock=Clock())


def _drain(loop: CheckpointLoop, rounds: int = 200) -> None:
    for _ in range(rounds):
        loop.run_once()


def test_every_checkpoint_writes_its_positions_after_its_books():
    log = _log_with_events(30)
    _drain(_loop(log))
    records = log.read(changelog_topic("w"), 0)
    usage_key = position_key(TOPICS.usage, 0).encode()
    positions = [i for i, (k, _) in enumerate(records) if k == usage_key]
    books = [i for i, (k, _) in enumerate(records) if k == b"alice"]
    assert positions and books
    assert records[positions[-1]][1] == b"30" and log.offsets[(TOPICS.usage, 0)] == 30
    # Each checkpoint's position record comes after that checkpoint's book record.
    assert all(any(b < p for b in books) for p in positions)


def test_restore_prefers_the_changelog_positions_to_commits_that_ran_ahead():
    log = _log_with_events(30)
    _drain(_loop(log))
    # An engine without transactions committed past what it processed.
    log.offsets[(TOPICS.usage, 0)] = 50
    core = LedgerCore(CONFIG)
    core.restore(0, log.read(changelog_topic("w"), 0), {(TOPICS.usage, 0): 50, (TOPICS.grants, 0): 1})
    assert core.positions[(TOPICS.usage, 0)] == 30
    assert core.positions[(TOPICS.grants, 0)] == 1


def test_restore_falls_back_to_commits_without_position_records():
    core = LedgerCore(CONFIG)
    core.restore(0, [], {(TOPICS.usage, 0): 7})
    assert core.positions[(TOPICS.usage, 0)] == 7


def test_a_new_loop_seeks_to_the_changelog_positions_and_loses_nothing():
    log = _log_with_events(20)
    _drain(_loop(log))
    for i in range(20, 40):  # more usage arrives
        usage = Usage(f"u-{i}", "alice", "openai", "gpt-4o", T0 + timedelta(minutes=i + 1), 100, 10, 0, 0, 10**6)
        log.append(TOPICS.usage, b"alice", encode_event(usage), timestamp=usage.event_time)
    log.offsets[(TOPICS.usage, 0)] = 35  # a commit past unprocessed records 20-34
    loop = _loop(log, seed=2)
    _drain(loop)
    book = EngineerBook.from_bytes(loop.core.books["alice"])
    assert book.taken == 41  # the grant and all 40 usage events, none skipped
    assert loop.core.positions[(TOPICS.usage, 0)] == 40


def test_waves_put_the_cut_first_outputs_next_then_state_and_positions_last():
    log = _log_with_events(5)
    core = LedgerCore(CONFIG)
    core.restore(0, [], {})
    messages = [SourceMessage(t, 0, o, k, v or b"", log.timestamp((t, 0), o) or T0)
                for t in (TOPICS.grants, TOPICS.usage) for o, (k, v) in enumerate(log.read(t, 0))]
    checkpoint = core.step(messages)
    cuts, outputs, state, positions = core.waves(checkpoint)
    # The state wave opens with the batch's refusals record (core/cut.py), which
    # only an engine writing in waves writes: not among the checkpoint's records.
    assert sorted(outputs + state[1:] + positions, key=id) == sorted(checkpoint.records, key=id)
    assert [(r.topic, r.key, r.partition) for r in state[:1]] == [(changelog_topic("w"), refused_key(0).encode(), 0)]
    assert decode_refusals(0, state[0].value) == ({TOPICS.usage: (0, 5), TOPICS.grants: (0, 1)}, [])
    assert [(r.topic, r.key, r.partition) for r in cuts] == [(changelog_topic("w"), cut_key(0).encode(), 0)]
    assert Cut.decode(0, cuts[0].value).ranges == {TOPICS.usage: (0, 5), TOPICS.grants: (0, 1)}
    assert {r.topic for r in state} == {changelog_topic("w")}
    assert {r.key for r in positions} == {position_key(TOPICS.usage, 0).encode(),
                                          position_key(TOPICS.grants, 0).encode()}
    assert TOPICS.balances in {r.topic for r in outputs}
    assert changelog_topic("w") not in {r.topic for r in outputs}
