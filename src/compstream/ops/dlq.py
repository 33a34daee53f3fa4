"""The dead-letter queue: list, inspect and redrive what the worker rejected.

A dead letter is identified by its place on the dead-letter topic, `P:O`
(partition:offset). Its *source* (topic:partition:offset of the rejected
record) is what redrive keys on: after a worker crash the same source record
can be dead-lettered twice, and it must be redriven once.

Redrive appends to the source topic (the event store is never edited):
either the raw bytes unchanged (after a code fix) or a corrected canonical
event. Then it writes a marker, keyed by the source, to a compacted topic
`<dead-letters topic>.redriven`; a marked source is not redriven again
(unless forced). Guarantees: the append is confirmed before the marker is
written, so a crash in between can redrive one record twice; the worker's
per-engineer event-id dedup turns that second copy into a counted duplicate
(same bytes, or the same fixed event), never a second application.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from compstream.codec import DecodeError, decode_event, decode_record, encode_event
from compstream.codec.avro_codec import json_default
from compstream.config import Topics
from compstream.domain.events import Event, EventError, event_from_dict, event_to_dict
from compstream.publish import SEND_TIMEOUT_S, make_producer, topic_for
from compstream.replay.kafka_source import SourceError, read_ranges, resolve_ranges

if TYPE_CHECKING:
    from kafka import KafkaConsumer

ENTRIES_MAX = 100_000  # dead letters held in memory by one command
PREVIEW_BYTES = 512
REDRIVE_HEADER = "compstream-redrive-of"


class DlqError(RuntimeError):
    """A dead-letter operation that cannot proceed; the message says why."""


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    partition: int
    offset: int
    size: int  # bytes of the rejected record's value
    record: dict | None  # the decoded DeadLetter; None if unreadable
    error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def source_id(self) -> str | None:
        r = self.record
        return None if r is None else f"{r['source_topic']}:{r['source_partition']}:{r['source_offset']}"


def marker_topic(topics: Topics) -> str:
    return f"{topics.dead_letters}.redriven"


def read_dead_letters(consumer: KafkaConsumer, topic: str) -> list[DeadLetterEntry]:
    entries: list[DeadLetterEntry] = []
    for rec in read_ranges(consumer, resolve_ranges(consumer, [topic])):
        if len(entries) >= ENTRIES_MAX:
            raise DlqError(f"more than {ENTRIES_MAX} dead letters on {topic}; "
                           "fix the cause and redrive in slices before listing all")
        try:
            name, record = decode_record(rec.value)
            if name != "DeadLetter":
                raise DecodeError("schema", f"{name} on the dead-letter topic")
        except DecodeError as exc:
            entries.append(DeadLetterEntry(rec.partition, rec.offset, len(rec.value or b""), None, str(exc)))
            continue
        entries.append(DeadLetterEntry(rec.partition, rec.offset, len(record["raw"]), record))
    return entries


def find(entries: list[DeadLetterEntry], ident: str | int) -> DeadLetterEntry:
    """`P:O`, or a bare offset when only one partition has it."""
    text = str(ident).strip()
    if ":" in text:
        hits = [e for e in entries if e.id == text]
    else:
        if not text.isdigit():
            raise DlqError(f"dead letter {text!r}: expected P:O or an offset")
        hits = [e for e in entries if e.offset == int(text)]
    if not hits:
        raise DlqError(f"no dead letter {text}")
    if len(hits) > 1:
        raise DlqError(f"offset {text} is ambiguous ({', '.join(e.id for e in hits)}); use P:O")
    return hits[0]


def read_markers(consumer: KafkaConsumer, topic: str) -> dict[str, dict]:
    """source id -> marker (latest wins); no marker topic yet = nothing redriven."""
    if not consumer.partitions_for_topic(topic):
        return {}
    out: dict[str, dict] = {}
    for rec in read_ranges(consumer, resolve_ranges(consumer, [topic])):
        if rec.key is None:
            continue
        if rec.value is None:
            out.pop(rec.key.decode(), None)
        else:
            out[rec.key.decode()] = json.loads(rec.value)
    return out


def ensure_marker_topic(bootstrap: str, name: str) -> None:
    import kafka.errors as kerr
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compstream-dlq")
    try:
        response = admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1,
                                               "configs": {"cleanup.policy": "compact"}}},
                                       raise_errors=False)
        for t in response["topics"]:
            err = kerr.for_code(t["error_code"])
            if err not in (kerr.NoError, kerr.TopicAlreadyExistsError):
                raise DlqError(f"cannot create marker topic {name}: {err.__name__}")
        admin.wait_for_topics([name], timeout_ms=30_000)
    finally:
        admin.close()


def preview(entry: DeadLetterEntry) -> dict:
    """What `dlq show` prints: metadata, hex and UTF-8 previews, decode attempt."""
    if entry.record is None:
        return {"id": entry.id, "error": entry.error}
    r = entry.record
    raw = bytes(r["raw"])
    out = {"id": entry.id, "source": entry.source_id, "stage": r["stage"], "reason": r["reason"],
           "key": None if r["key"] is None else bytes(r["key"]).decode("utf-8", "replace"),
           "received_at": r["received_at"].isoformat(), "size": len(raw),
           "hex": hexdump(raw[:PREVIEW_BYTES]),
           "utf8": raw[:PREVIEW_BYTES].decode("utf-8", "replace"), "truncated": len(raw) > PREVIEW_BYTES}
    try:
        out["decoded"] = {"event": event_to_dict(decode_event(raw))}
    except DecodeError as exc:
        out["decoded"] = {"error": f"decode:{exc.stage}: {exc.reason}"}
    except EventError as exc:
        # Framing and schema are fine, the content is not: show the record.
        name, record = decode_record(raw)
        out["decoded"] = {"error": f"validate: {exc}", name: json.loads(json.dumps(record, default=json_default))}
    return out


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for i in range(0, len(data), width):
        chunk = data[i:i + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{i:08x}  {chunk.hex(' '):<{width * 3}} {text}")
    return "\n".join(lines)


def load_fixed(path: Path, entries: list[DeadLetterEntry]) -> dict[str, Event]:
    """JSONL lines `{"offset": "P:O" (or O), "event": {canonical event}}`
    -> dead-letter id -> corrected event. Every bad line is an error."""
    fixed: dict[str, Event] = {}
    problems = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict) or "offset" not in obj or "event" not in obj:
                    raise ValueError('expected {"offset": "P:O", "event": {...}}')
                entry = find(entries, obj["offset"])
                if entry.id in fixed:
                    raise ValueError(f"dead letter {entry.id} fixed twice")
                fixed[entry.id] = event_from_dict(obj["event"])
            except (ValueError, EventError, DlqError) as exc:
                problems.append(f"{path}:{n}: {exc}")
    if problems:
        raise DlqError("bad --fixed file:\n" + "\n".join(problems))
    return fixed


@dataclass(frozen=True, slots=True)
class Redrive:
    entry: DeadLetterEntry
    topic: str
    key: bytes | None
    value: bytes
    mode: str  # "raw" | "fixed"


def plan(entries: list[DeadLetterEntry], markers: dict[str, dict], topics: Topics, *,
         selected: list[DeadLetterEntry], fixed: dict[str, Event],
         force: bool = False) -> tuple[list[Redrive], list[tuple[DeadLetterEntry, str]]]:
    """What to publish, and what is skipped (with why). One redrive per source
    record, in source order (an engineer's events keep their relative order)."""
    todo: list[Redrive] = []
    skipped: list[tuple[DeadLetterEntry, str]] = []
    sources = {topics.usage, topics.grants}
    seen: set[str] = set()
    for entry in sorted(selected, key=lambda e: (e.source_id or "", e.partition, e.offset)):
        r = entry.record
        if r is None:
            skipped.append((entry, f"unreadable dead letter: {entry.error}"))
            continue
        if entry.source_id in seen:
            skipped.append((entry, "same source record as another selected dead letter"))
            continue
        if entry.source_id in markers and not force:
            skipped.append((entry, f"already redriven ({markers[entry.source_id].get('target')})"))
            continue
        if r["source_topic"] not in sources:
            skipped.append((entry, f"source topic {r['source_topic']} is not a source topic of {topics.prefix}"))
            continue
        event = fixed.get(entry.id)
        if event is not None:
            if topic_for(event, topics) != r["source_topic"]:
                skipped.append((entry, f"a {event.type} event belongs on {topic_for(event, topics)}, "
                                       f"not {r['source_topic']}"))
                continue
            todo.append(Redrive(entry, r["source_topic"], event.engineer_id.encode(), encode_event(event), "fixed"))
        elif r["stage"] == "conflict" and not force:
            skipped.append((entry, "a conflict is decided by data: the same bytes conflict again "
                                   "(supply --fixed, or --force)"))
            continue
        elif r["stage"] == "too_old" and not force:
            skipped.append((entry, "usage older than the dedupe horizon is refused again, always "
                                   "(supply --fixed with a new event id dated within it, or --force)"))
            continue
        else:
            key = None if r["key"] is None else bytes(r["key"])
            todo.append(Redrive(entry, r["source_topic"], key, bytes(r["raw"]), "raw"))
        seen.add(entry.source_id)  # type: ignore[arg-type]  # set once the record reads (checked above)
    return todo, skipped


def execute(todo: list[Redrive], bootstrap: str, markers_topic: str, dead_letters_topic: str) -> list[str]:
    """Publish each redrive (confirmed), then its marker (confirmed). Returns
    the new source coordinates, in order."""
    if not todo:
        return []
    ensure_marker_topic(bootstrap, markers_topic)
    producer = make_producer(bootstrap)
    out = []
    try:
        for item in todo:
            headers = [(REDRIVE_HEADER, item.entry.source_id.encode()),  # type: ignore[union-attr]  # set (plan)
                       ("compstream-dead-letter", f"{dead_letters_topic}:{item.entry.id}".encode())]
            meta = producer.send(item.topic, key=item.key, value=item.value,
                                 headers=headers).get(timeout=SEND_TIMEOUT_S)
            target = f"{meta.topic}:{meta.partition}:{meta.offset}"
            marker = {"dead_letter": item.entry.id, "source": item.entry.source_id, "target": target,
                      "mode": item.mode, "at": datetime.now(timezone.utc).isoformat()}
            producer.send(markers_topic, key=item.entry.source_id.encode(),  # type: ignore[union-attr]
                          value=json.dumps(marker).encode()).get(timeout=SEND_TIMEOUT_S)
            out.append(target)
    except Exception as exc:
        raise SourceError(f"redrive stopped after {len(out)} of {len(todo)}: {exc!r}") from exc
    finally:
        producer.close(timeout=SEND_TIMEOUT_S)
    return out
