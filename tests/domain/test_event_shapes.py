"""Every shape of an event follows its one definition (the dataclasses and the
field vocabulary in domain/events.py): the derived ones (fast builders, the
msgspec line struct, EventRow's column map) are built from it, the written
ones (schemas/*.avsc, EventRow, the events table DDL) are checked against it.
The equivalence of the fast parsers with event_from_dict is
tests/domain/test_event_fast.py."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from typing import get_type_hints

import fastavro
import msgspec
import pytest
from fastavro.schema import to_parsing_canonical_form

from compstream.codec.avro_codec import SCHEMAS, schema_dir
from compstream.codec.event_schemas import check_event_schema, event_schema
from compstream.domain import book_codec, event_fast, events
from compstream.domain.events import EVENT_CLASSES, EVENT_FIELDS, Usage, event_to_dict
from compstream.history import rows, schema
from compstream.history.rows import EventRow
from compstream.replay import jsonl_fast

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _avsc(cls: type) -> dict:
    for path in schema_dir().glob("*.avsc"):
        raw = json.loads(path.read_text())
        if raw["name"] == cls.__name__:
            return raw
    raise AssertionError(f"no schema file for {cls.__name__}")


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_each_avsc_file_is_its_dataclass_schema(cls):
    """Same canonical form (so the same fingerprint and bytes) as the schema
    derived from the dataclass; the codec loaded exactly this file."""
    derived = to_parsing_canonical_form(fastavro.parse_schema(event_schema(cls)))
    assert derived == SCHEMAS[cls.__name__].canonical
    check_event_schema(_avsc(cls), "file")  # defaults too


def test_an_avsc_file_without_a_new_field_is_refused():
    raw = _avsc(Usage)
    raw["fields"] = [f for f in raw["fields"] if f["name"] != "price_version"]
    with pytest.raises(ValueError, match='"price_version"'):
        check_event_schema(raw, "usage.avsc")
    raw = _avsc(Usage)
    raw["fields"][7]["default"] = None  # cache_read_tokens reads 0 when absent
    with pytest.raises(ValueError, match="Usage"):
        check_event_schema(raw, "usage.avsc")


def _ddl_columns(table: str) -> dict[str, str]:
    """Column -> type of `table` after every migration, read from the DDL."""
    columns: dict[str, str] = {}
    for migration in schema.MIGRATIONS:
        for statement in migration.statements:
            create = re.match(rf"CREATE TABLE IF NOT EXISTS {{db}}\.{table} \((.*?)\n\) ENGINE",
                              statement, re.S)
            if create:
                for line in create.group(1).strip().splitlines():
                    name, column_type = line.strip().rstrip(",").split(" ", 1)
                    columns[name] = column_type
            for name, column_type in re.findall(
                    rf"ALTER TABLE {{db}}\.{table} ADD COLUMN IF NOT EXISTS (\w+) (.+)", statement):
                columns[name] = column_type
    return columns


def test_events_table_columns_are_event_rows_fields():
    want = {f.name: schema.event_column_type(f.name) for f in dataclasses.fields(EventRow)}
    assert _ddl_columns("events") == want


_SAMPLES = [
    events.GrantIssued("g1", "e1", "G1", 10, T0, T0.replace(year=2027), "monthly"),
    events.GrantRevoked("r1", "e1", "G1", T0), events.EngineerOffboarded("o1", "e1", T0),
    Usage("u1", "e1", "p", "m", T0, 1, 2, 3, 4, 5, "why", "v1", "u0"),
    events.TeamAssigned("t1", "e1", "infra", T0), events.LeaderboardPrivacy("l1", "e1", True, T0),
    events.CashCompensation("c1", "e1", 7, T0),
]


def test_samples_cover_every_event_class():
    assert {type(e) for e in _SAMPLES} == set(EVENT_CLASSES)


@pytest.mark.parametrize("event", _SAMPLES, ids=lambda e: e.type)
def test_an_event_row_carries_every_field(event):
    row = EventRow.from_event(event, topic="t", partition=0, offset=1, ingest_time=T0)
    for spec in EVENT_FIELDS[type(event)]:
        column = "grant_kind" if spec.name == "kind" else spec.name
        want = getattr(event, spec.name)
        got = row.event_time if column in ("effective_at", "occurred_at") else getattr(row, column)
        assert got == want and type(got) is type(want)


# ------------------------------------------- a field added to the definition
@pytest.fixture
def usage_with_region(monkeypatch):
    """Usage plus `region: str | None = None`, registered as an event."""
    hints = get_type_hints(Usage)
    fields = [(f.name, hints[f.name], dataclasses.field(
        **({} if f.default is dataclasses.MISSING else {"default": f.default})))
        for f in dataclasses.fields(Usage) if f.name != "type"]
    fields += [("region", str | None, dataclasses.field(default=None)),
               ("type", str, dataclasses.field(default="usage", init=False))]
    cls = dataclasses.make_dataclass("Usage", fields, frozen=True, slots=True)
    monkeypatch.setitem(events.TEXT_LENGTH_MAX, "region", 32)
    monkeypatch.setitem(EVENT_FIELDS, cls, events._field_specs(cls))
    return cls


def test_a_field_without_a_limit_fails_at_import(usage_with_region, monkeypatch):
    monkeypatch.delitem(events.TEXT_LENGTH_MAX, "region")
    with pytest.raises(TypeError, match="region: add its limit to TEXT_LENGTH_MAX"):
        events._field_specs(usage_with_region)


def test_a_new_field_reaches_the_fast_builder(usage_with_region):
    raw = event_to_dict(Usage("u1", "e1", "p", "m", T0, 1, 2, 3, 4, 5))
    build = event_fast._builder(usage_with_region)
    assert build({**raw, "region": "eu"}, "u1", "e1").region == "eu"
    assert build(raw, "u1", "e1").region is None
    assert build({**raw, "region": "x" * 33}, "u1", "e1") is None  # over its limit: declines


def test_a_new_field_reaches_the_line_parser(usage_with_region):
    struct = jsonl_fast.line_struct(usage_with_region)
    line = json.dumps({**event_to_dict(Usage("u1", "e1", "p", "m", T0, 1, 2, 3, 4, 5)), "region": "eu"})
    assert msgspec.json.decode(line, type=struct).region == "eu"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(line.replace('"eu"', '"' + "x" * 33 + '"'), type=struct)
    assert "_u.region" in jsonl_fast.line_event_source(usage_with_region)


def test_a_new_field_is_refused_by_the_old_avsc(usage_with_region, monkeypatch):
    assert event_schema(usage_with_region)["fields"][-1] == {
        "name": "region", "type": ["null", "string"], "default": None}
    from compstream.codec import event_schemas
    monkeypatch.setitem(event_schemas.EVENT_CLASS_BY_RECORD, "Usage", usage_with_region)
    with pytest.raises(ValueError, match='"region"'):
        check_event_schema(_avsc(Usage), "usage.avsc")


def test_a_new_field_needs_its_event_row_column(usage_with_region, monkeypatch):
    monkeypatch.setattr(rows, "EVENT_CLASSES", (usage_with_region,))
    monkeypatch.setattr(rows, "_EVENT_COLUMNS", {})
    with pytest.raises(TypeError, match=re.escape("`region: str | None = None` in EventRow")):
        rows._check_event_columns()


# ------------------------------------------------- the book's compact events
@pytest.mark.parametrize("event", [e for e in _SAMPLES if type(e) in events.LEDGER_EVENT_CLASSES],
                         ids=lambda e: e.type)
def test_the_books_compact_event_holds_every_field(event):
    """book_codec's compact lists stay written out: they are stored state
    (the book changelog), so a new field needs a decision for books written
    without it (a book version, a default); this fails until it is made."""
    compact = book_codec.event_to_compact(event)
    assert len(compact) == len(EVENT_FIELDS[type(event)])  # a tag, every field but engineer_id
    assert book_codec.event_from_compact(event.engineer_id, compact) == event
