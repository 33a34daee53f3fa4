"""Leaderboard partition stage, free of Faust: source messages in, candidate
messages and state records out (the agent in leaderboards.py moves the bytes).

State is persisted as small per-key records, never as one blob per partition
(the all-time window holds every engineer of the partition, which would not fit
in one Kafka message):
- `e|<partition>|<engineer>`: the engineer's totals per window and team (open
  windows, and closed ones within retention: late usage still adjusts them),
  team/privacy timelines, and the next source offset per topic applied to it;
- `m|<partition>`: watermark, stream time and window versions.

No double counting on redelivery: an engineer's record carries the offsets
already applied to it, in the same record as the totals they produced, so each
record is self-consistent even if a crash flushed only some records. A message
below the engineer's next offset for its topic is skipped. A *republished*
duplicate (same event id at a new offset) never gets here: the worker feeds
this stage only the messages its ledger applied (books remember event ids).

Versions: the merge keeps the highest version per (window, partition), so a
restarted partition must never reuse a lower one. At each emission versions are
raised to the wall clock in microseconds (an ordering token, not event time).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

from compstream.codec import DecodeError, decode_event
from compstream.domain.events import EngineerOffboarded, Event, EventError, LeaderboardPrivacy, TeamAssigned, Usage
from compstream.domain.leaderboard import (
    CandidateMessage,
    LeaderboardConfig,
    LeaderboardError,
    PartitionState,
    PartitionWindow,
    PrivacyTimeline,
    TeamTimeline,
    Totals,
    WatermarkMessage,
    window_from_key,
    windows_for,
)
from compstream.domain.leaderboard import _codec as c
from compstream.json_bytes import orjson_if_same
from compstream.worker.messages import Coord, SourceMessage

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TOTALS_FIELDS = tuple(Totals().to_dict())


def dumps(obj: object) -> bytes:
    """`json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()`,
    by orjson (~5x faster) where that is byte-identical (json_bytes.py).
    Leaderboard documents hold no floats: every amount and count is an int."""
    data = orjson_if_same(obj, orjson.OPT_SORT_KEYS)
    return data if data is not None else _dumps_reference(obj)


def _dumps_reference(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def engineer_key(partition: int, engineer: str) -> str:
    return f"e|{partition}|{engineer}"


def meta_key(partition: int) -> str:
    return f"m|{partition}"


def correction_totals(usage: Usage) -> Totals:
    """A correction is a delta on an event already counted: it adds no event
    and no unpriced count (an unpriced restatement keeps the booked cost)."""
    return Totals(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                  usage.cache_write_tokens, usage.cost_nanos or 0, 0, 0)


def _non_negative(t: Totals) -> bool:
    return all(v >= 0 for v in t.to_dict().values())


@dataclass
class StageOutput:
    messages: list[CandidateMessage | WatermarkMessage] = field(default_factory=list)  # send in order
    records: dict[int, dict[str, bytes]] = field(default_factory=dict)  # partition -> key -> value
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    too_late: int = 0  # usage (or corrections) for windows closed longer than the retention
    late: int = 0  # usage counted as a late adjustment of a closed window
    unmatched_corrections: int = 0


class PartitionStage:
    def __init__(self, config: LeaderboardConfig, topic_labels: dict[str, str]):
        self.config = config
        # Source topic name -> stable label stored in records ("usage", "grants"),
        # so records survive a topic prefix change.
        self.labels = topic_labels
        self.states: dict[int, PartitionState] = {}
        self.next_offsets: dict[int, dict[str, dict[str, int]]] = {}  # partition -> engineer -> label -> next
        self.stream_time: dict[int, datetime] = {}

    def loaded(self, partition: int) -> bool:
        return partition in self.states

    def forget(self) -> None:
        """Drop everything in memory (after a rebalance the records may have
        moved on under another worker); `restore` reloads on demand."""
        self.states.clear()
        self.next_offsets.clear()
        self.stream_time.clear()

    # -- restore ---------------------------------------------------------

    def restore(self, partition: int, items: Iterable[tuple[str, bytes]], now_us: int) -> list[CandidateMessage]:
        """Rebuild one partition from its records; returns every open window's
        message to resend (the merge may lack what was persisted but not sent)."""
        state = PartitionState(partition, self.config)
        offsets: dict[str, dict[str, int]] = {}
        versions: dict[str, int] = {}
        engineers: list[dict[str, Any]] = []
        prefix, meta = f"e|{partition}|", meta_key(partition)
        for key, value in items:
            if key == meta:
                raw = c.obj(json.loads(value), "partition meta")
                state.watermark = c.opt_time(raw, "watermark")
                stream = c.opt_time(raw, "stream_time")
                if stream is not None:
                    self.stream_time[partition] = stream
                versions = {k: c.req_int(raw["versions"], k) for k in c.obj(raw.get("versions"), "versions")}
            elif key.startswith(prefix):
                engineers.append(c.obj(json.loads(value), "engineer record"))
        for raw in engineers:
            engineer = c.req_str(raw, "engineer_id")
            nxt = c.obj(raw.get("next"), "next")
            offsets[engineer] = {label: c.req_int(nxt, label) for label in nxt}
            offboarded = c.opt_time(raw, "offboarded_at")
            if offboarded is not None:  # after the watermark is set: restore_offboarding reads it
                state.restore_offboarding(engineer, offboarded)
            if raw.get("team") is not None:
                state.teams[engineer] = TeamTimeline.from_dict(raw["team"])
            if raw.get("privacy") is not None:
                state.privacy[engineer] = PrivacyTimeline.from_dict(raw["privacy"])
            for wkey, by_team in c.obj(raw.get("windows"), "windows").items():
                slot = state.slot_for(window_from_key(wkey))
                if slot is None:
                    continue  # a stale record of a window closed past retention since it was written
                pw = slot.get(wkey) or PartitionWindow(wkey, versions.get(wkey, 0))
                pw.put_engineer(engineer, {t: Totals.from_dict(v) for t, v in c.obj(by_team, "by team").items()})
                slot[wkey] = pw
        self.states[partition] = state
        self.next_offsets[partition] = offsets
        for pw in [*state.windows.values(), *state.closed.values()]:
            pw.version = max(pw.version + 1, now_us)
        return state.all_messages()

    # -- process ---------------------------------------------------------

    def process(self, messages: list[SourceMessage], now_us: int,
                decoded: dict[Coord, Event] | None = None) -> StageOutput:
        """`decoded`: (topic, partition, offset) -> event, decoded already by
        the ledger from these very bytes; messages not in it are decoded here."""
        decoded = decoded or {}
        out = StageOutput()
        changed: dict[int, set[str]] = {}
        for msg in messages:
            if msg.partition not in self.states:
                raise LeaderboardError(f"partition {msg.partition} not restored before processing")
            self._apply(msg, out, changed.setdefault(msg.partition, set()),
                        decoded.get((msg.topic, msg.partition, msg.offset)))
        for partition in sorted(changed):
            if partition in self.stream_time:  # nothing decodable yet: no watermark to send
                out.messages.extend(self._emit(partition, now_us))
            out.records[partition] = self._records(partition, changed[partition])
        return out

    def _apply(self, msg: SourceMessage, out: StageOutput, changed: set[str], event: Event | None = None) -> None:
        if event is None:
            try:
                event = decode_event(msg.value)
            except (DecodeError, EventError):
                out.skipped += 1  # the ledger agent dead-letters it
                return
        engineer = event.engineer_id
        if msg.key is None or msg.key.decode("utf-8", "replace") != engineer:
            out.skipped += 1  # wrong partition for this engineer: would break exactness
            return
        label = self.labels[msg.topic]
        nxt = self.next_offsets[msg.partition].setdefault(engineer, {})
        if msg.offset < nxt.get(label, 0):
            out.duplicates += 1
            return
        nxt[label] = msg.offset + 1
        changed.add(engineer)  # the offsets moved: rewrite the record
        state = self.states[msg.partition]
        if isinstance(event, Usage):
            # Only usage moves stream time (as in the ledger): a team move
            # dated ahead must not close today's windows.
            if event.event_time > self.stream_time.get(msg.partition, EPOCH):
                self.stream_time[msg.partition] = event.event_time
            if event.corrects_event_id is not None:
                self._apply_correction(state, event, out)
            else:
                result = state.apply_usage(event)
                out.too_late += bool(result.too_late)
                out.late += bool(result.late)
            out.applied += 1
        elif isinstance(event, (TeamAssigned, LeaderboardPrivacy, EngineerOffboarded)):
            state.apply_hr(event)
            out.applied += 1
            # Decoded input, so the partition reports a watermark (from its
            # usage so far, or none yet) without HR time moving it.
            self.stream_time.setdefault(msg.partition, EPOCH)

    def _apply_correction(self, state: PartitionState, usage: Usage, out: StageOutput) -> None:
        """Add a correction delta to the window totals it corrects.

        Goes to the team in force at its time; if that would make a total
        negative (the usage it corrects was counted under another team, or not
        at all, e.g. too late), it goes to the engineer's team that can absorb
        it, else it is dropped for that window and counted as unmatched: a
        negative total would be a value nobody had. A closed window within
        retention takes it as a late adjustment, like late usage."""
        delta = correction_totals(usage)
        team = state.team_at(usage.engineer_id, usage.occurred_at)
        for window in windows_for(usage.occurred_at, self.config.kinds):
            slot = state.slot_for(window)
            if slot is None:
                out.too_late += 1
                continue
            pw = slot.get(window.key) or PartitionWindow(window.key)
            by_team = pw.by_team(usage.engineer_id) or {}
            options = [team] + sorted(t for t in by_team if t != team)
            target = next((t for t in options if _non_negative(by_team.get(t, Totals()) + delta)), None)
            if target is None:
                out.unmatched_corrections += 1
                log.warning("correction %s has nothing to correct in %s; not counted",
                            usage.event_id, window.key)
                continue
            pw.add(usage.engineer_id, target, delta)
            slot[window.key] = pw
            state.dirty.add(window.key)
            out.late += slot is state.closed

    def _emit(self, partition: int, now_us: int) -> list[CandidateMessage | WatermarkMessage]:
        """Finals + watermark (if the watermark moved), then changed windows."""
        state = self.states[partition]
        watermark = self.stream_time.get(partition, EPOCH) - self.config.lateness
        advancing = state.watermark is None or watermark > state.watermark
        for key, pw in state.windows.items():
            closing = advancing and window_from_key(key).is_closed(watermark, self.config.lateness)
            if key in state.dirty or closing:
                pw.version = max(pw.version + 1, now_us)
        for key in state.dirty:  # late adjustments of closed windows
            closed = state.closed.get(key)
            if closed is not None:
                closed.version = max(closed.version + 1, now_us)
        out: list[CandidateMessage | WatermarkMessage] = []
        if advancing:
            out.extend(state.advance_watermark(watermark))
        out.extend(state.drain())
        return out

    def _records(self, partition: int, engineers: set[str]) -> dict[str, bytes]:
        state = self.states[partition]
        offsets = self.next_offsets[partition]
        records: dict[str, bytes] = {}
        retained = sorted([*state.windows.items(), *state.closed.items()])  # once, not per engineer
        for engineer in sorted(engineers):
            windows = {}
            for key, pw in retained:
                by_team = pw.by_team(engineer)
                if by_team is not None:
                    windows[key] = {t: tot.to_dict() for t, tot in sorted(by_team.items())}
            team, privacy = state.teams.get(engineer), state.privacy.get(engineer)
            record = {
                "engineer_id": engineer,
                "next": offsets.get(engineer, {}),
                "windows": windows,
                "team": team.to_dict() if team is not None else None,
                "privacy": privacy.to_dict() if privacy is not None else None,
            }
            offboarded = state.offboarded.get(engineer)
            if offboarded is not None:  # absent otherwise: records written before keep their bytes
                record["offboarded_at"] = c.time_out(offboarded)
            records[engineer_key(partition, engineer)] = dumps(record)
        stream = self.stream_time.get(partition)
        records[meta_key(partition)] = dumps({
            "partition": partition,
            "watermark": c.time_out(state.watermark),
            "stream_time": c.time_out(stream),
            "versions": {k: pw.version for k, pw in sorted([*state.windows.items(), *state.closed.items()])},
        })
        return records
