"""Codec round trips, framing errors, and schema checks with the `avro` library."""

import json
from datetime import datetime, timezone
from pathlib import Path

import avro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compstream.codec import SCHEMAS, DecodeError, decode_event, decode_record, encode_event, encode_record
from compstream.codec.avro_codec import schema_dir
from compstream.domain.events import EventError, GrantIssued, TeamAssigned, Usage

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _usage(**overrides):
    fields = dict(
        event_id="u-1", engineer_id="e-1", provider="anthropic", model="claude-sonnet-4",
        occurred_at=T0, input_tokens=1200, output_tokens=300, cache_read_tokens=50,
        cache_write_tokens=7, cost_nanos=12_345_678,
    )
    fields.update(overrides)
    return Usage(**fields)


def test_usage_round_trip_keeps_every_field_and_microseconds():
    event = _usage(unpriced_reason=None, price_version="genai-prices 0.2.3")
    assert decode_event(encode_event(event)) == event


def test_grant_with_null_expiry_round_trips():
    event = GrantIssued("g-1", "e-1", "lot-1", 500_000_000_000, T0, None, "allowance")
    assert decode_event(encode_event(event)) == event


def test_hr_event_round_trips():
    event = TeamAssigned("t-1", "e-1", "infra", T0)
    assert decode_event(encode_event(event)) == event


def test_every_message_carries_its_writer_schema_fingerprint():
    data = encode_event(_usage())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == SCHEMAS["Usage"].header[2:]
    assert data[2:10] != SCHEMAS["GrantIssued"].header[2:]


@pytest.mark.parametrize(
    "raw, stage",
    [
        (b"", "framing"),
        (b"hello world, not avro", "framing"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "schema"),
    ],
)
def test_garbage_is_a_decode_error_with_a_stage(raw, stage):
    with pytest.raises(DecodeError) as info:
        decode_event(raw)
    assert info.value.stage == stage


def test_truncated_body_is_a_decode_error():
    data = encode_event(_usage())
    with pytest.raises(DecodeError) as info:
        decode_event(data[:-5])
    assert info.value.stage == "body"


def test_trailing_bytes_are_rejected():
    with pytest.raises(DecodeError):
        decode_event(encode_event(_usage()) + b"\x00")


def test_valid_avro_with_invalid_content_is_an_event_error():
    record = {f: getattr(_usage(), f) for f in Usage.__dataclass_fields__ if f != "type"}
    record["input_tokens"] = -5
    with pytest.raises(EventError) as info:
        decode_event(encode_record("Usage", record))
    assert info.value.field_name == "input_tokens"


def test_non_event_record_is_not_an_event():
    data = encode_record(
        "DeadLetter",
        {"source_topic": "t", "source_partition": 0, "source_offset": 1, "key": None,
         "raw": b"x", "stage": "framing", "reason": "r", "received_at": T0},
    )
    assert decode_record(data)[0] == "DeadLetter"
    with pytest.raises(DecodeError):
        decode_event(data)


@pytest.mark.parametrize("path", sorted(schema_dir().glob("*.avsc")), ids=lambda p: p.name)
def test_schemas_parse_with_the_reference_avro_library(path: Path):
    parsed = avro.schema.parse(path.read_text())
    assert parsed.name == json.loads(path.read_text())["name"]
    # Money never travels as a float.
    for field in json.loads(path.read_text())["fields"]:
        if field["name"].endswith("_nanos"):
            types = field["type"] if isinstance(field["type"], list) else [field["type"]]
            assert "long" in types and "double" not in types and "float" not in types


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.integers(0, 10**12),
    cost=st.one_of(st.none(), st.integers(0, 10**15)),
    micros=st.integers(0, 999_999),
    engineer=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40),
)
def test_round_trip_property(tokens, cost, micros, engineer):
    event = _usage(engineer_id=engineer, input_tokens=tokens, cost_nanos=cost,
                   occurred_at=T0.replace(microsecond=micros))
    assert decode_event(encode_event(event)) == event
