"""The worker's leaderboard stages without Kafka: batching, restore from
records, redelivery after a crash, corrections. Expected boards come from the
brute-force model."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

from compstream.codec import encode_event
from compstream.domain.events import Usage
from compstream.domain.leaderboard import LeaderboardConfig
from compstream.synth import generate
from compstream.worker.leaderboards.merge import MergeStage
from compstream.worker.leaderboards.partition import PartitionStage, engineer_key
from compstream.worker.processor import SourceMessage, partition_of
from lb_kafka import expected_boards

P = 4
CFG = LeaderboardConfig(k=5, lateness=timedelta(days=40))  # nothing late
LABELS = {"u": "usage", "g": "grants"}
NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def _messages(events):
    offsets: dict = {}
    out = []
    for e in events:
        topic = "u" if e.type == "usage" else "g"
        p = partition_of(e.engineer_id, P)
        o = offsets.get((topic, p), 0)
        offsets[(topic, p)] = o + 1
        out.append(SourceMessage(topic, p, o, e.engineer_id.encode(), encode_event(e), NOW))
    return out


def _run(stage, merge, messages, records, clock, batch=97):
    for i in range(0, len(messages), batch):
        clock[0] += 1_000
        out = stage.process(messages[i:i + batch], clock[0])
        for recs in out.records.values():
            records.update(recs)
        merge.process([json.dumps(m.to_dict()).encode() for m in out.messages])


def _board_rows(merge, key):
    window, scope, metric = key.split("|")
    board = merge.lookup(window, *[k for k in _kinds() if k[0].value == scope and k[1].value == metric][0])
    return [(e["id"], e["value"]) for e in board["entries"]] if board else []


def _kinds():
    from compstream.domain.leaderboard.boards import BOARD_KINDS
    return BOARD_KINDS


def _events():
    events = [e for e in generate(engineers=30, usage_events=900, seed=4, with_hr=True, span_days=6, teams=3)
              if e.type in ("usage", "team_assigned")]
    usage = [e for e in events if isinstance(e, Usage)]
    target = usage[100]
    correction = dataclasses.replace(target, event_id="fix-1", corrects_event_id=target.event_id,
                                     input_tokens=-target.input_tokens + 5, cost_nanos=-(target.cost_nanos or 0))
    return events + [correction]


def test_restart_and_redelivery_do_not_double_count():
    events = _events()
    messages = _messages(events)
    expected = expected_boards(events, CFG.k, CFG.min_team_size)
    stage, merge, records, clock = PartitionStage(CFG, LABELS), MergeStage(CFG, P), {}, [10**15]
    for p in range(P):
        stage.restore(p, [], clock[0])
    merge.restore([])
    half = len(messages) // 2
    _run(stage, merge, messages[:half], records, clock)

    # "Crash": a new stage from the persisted records only; Kafka redelivers
    # from well before the crash point (uncommitted offsets).
    stage2 = PartitionStage(CFG, LABELS)
    for p in range(P):
        items = [(k, v) for k, v in records.items() if k.startswith(f"e|{p}|") or k == f"m|{p}"]
        clock[0] += 1_000
        resent = stage2.restore(p, items, clock[0])
        merge.process([json.dumps(m.to_dict()).encode() for m in resent])
    _run(stage2, merge, messages[half // 2:], records, clock, batch=61)
    for key, rows in expected.items():
        assert _board_rows(merge, key) == rows, key


def test_correction_that_matches_nothing_is_not_counted():
    stage = PartitionStage(CFG, LABELS)
    engineer = "eng-00001"
    p = partition_of(engineer, P)
    stage.restore(p, [], 1)
    orphan = Usage("fix-x", engineer, "openai", "gpt-4o", datetime(2026, 10, 3, tzinfo=timezone.utc),
                   -50, 0, 0, 0, -10, corrects_event_id="never-seen")
    out = stage.process(_messages([orphan]), 2)
    assert out.unmatched_corrections == 4  # day, week, month, all
    assert all(engineer not in pw.contributions for pw in stage.states[p].windows.values())
    assert json.loads(out.records[p][engineer_key(p, engineer)])["windows"] == {}


def test_events_decoded_by_the_ledger_give_the_same_stage_output():
    """The worker hands the stage the ledger's decoded events (one decode per
    message); the output must equal the stage decoding the bytes itself."""
    from compstream.codec.avro_codec import decode_event
    from compstream.worker.processor import LedgerProcessor

    messages = _messages(_events())
    garbage = SourceMessage("u", 0, 10**6, b"x", b"not avro", NOW)
    messages.insert(len(messages) // 2, garbage)
    ledger = LedgerProcessor(40 * 86400, load_book=lambda e: None, partitions=P)
    outputs = []
    for reuse in (False, True):
        stage = PartitionStage(CFG, LABELS)
        for p in range(P):
            stage.restore(p, [], 1)
        got = []
        for i in range(0, len(messages), 97):
            chunk = messages[i:i + 97]
            decoded = ledger.process(chunk).decoded if reuse else None
            if reuse:
                assert set(decoded) == {(m.topic, m.partition, m.offset) for m in chunk if m is not garbage}
                assert all(decoded[(m.topic, m.partition, m.offset)] == decode_event(m.value)
                           for m in chunk if m is not garbage)
            out = stage.process(chunk, 2 + i, decoded)
            got.append(([m.to_dict() for m in out.messages], out.records, out.skipped, out.applied))
        outputs.append(got)
    assert outputs[0] == outputs[1]
    assert sum(skipped for _, _, skipped, _ in outputs[1]) == 1  # the garbage, decoded by the stage itself
