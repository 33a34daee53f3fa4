"""The Avro record schema of each event, derived from its dataclass.

schemas/*.avsc stay files (external consumers and schema registries read
them, and `COMPSTREAM_SCHEMA_DIR` may point elsewhere), so the codec checks
each event schema it loads against `event_schema(cls)` and refuses to start on
a difference: otherwise a field added to an event but not to its .avsc would
be dropped silently by the encoder (fastavro ignores unknown keys).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from compstream.domain.events import EVENT_CLASSES, EVENT_FIELDS, Event, FieldSpec, event_type_of

NAMESPACE = "compstream.v1"
_AVRO_TYPES: dict[type, Any] = {
    str: "string",
    int: "long",
    bool: "boolean",
    datetime: {"type": "long", "logicalType": "timestamp-micros"},
}

# Record name (without namespace) -> canonical event `type`.
EVENT_RECORDS = {cls.__name__: event_type_of(cls) for cls in EVENT_CLASSES}
EVENT_CLASS_BY_RECORD = {cls.__name__: cls for cls in EVENT_CLASSES}


def avro_field(spec: FieldSpec) -> dict[str, Any]:
    avro_type = _AVRO_TYPES[spec.kind]
    if spec.optional:
        return {"name": spec.name, "type": ["null", avro_type], "default": None}
    if spec.absent_as is not None:
        return {"name": spec.name, "type": avro_type, "default": spec.absent_as}
    return {"name": spec.name, "type": avro_type}


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The record schema of `cls` (without its doc)."""
    return {"type": "record", "name": cls.__name__, "namespace": NAMESPACE,
            "fields": [avro_field(spec) for spec in EVENT_FIELDS[cls]]}


def check_event_schema(raw: dict[str, Any], source: str) -> None:
    """Raise ValueError when the event schema `raw` (read from `source`)
    differs from its event's dataclass; docs may differ."""
    cls = EVENT_CLASS_BY_RECORD.get(raw.get("name", ""))
    if cls is None:
        return
    expected = event_schema(cls)
    actual = {key: value for key, value in raw.items() if key != "doc"}
    actual["fields"] = [{k: v for k, v in f.items() if k != "doc"} for f in raw.get("fields", ())]
    if actual != expected:
        lines = ",\n".join("    " + json.dumps(f) for f in expected["fields"])
        raise ValueError(f"{source}: the {cls.__name__} schema differs from the {cls.__name__} "
                         f"dataclass (domain/events.py); its fields should read:\n{lines}")
