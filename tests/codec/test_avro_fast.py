"""The generated Avro codec (avro_fast) against fastavro: same bytes for every
valid record of every schema, same values (types and time zones included)
for every message, and the same DecodeError for corrupt ones."""

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compstream.codec import avro_fast
from compstream.codec.avro_codec import (
    HEADER_LENGTH,
    MESSAGE_BYTES_MAX,
    RECORD_BY_EVENT_TYPE,
    SCHEMAS,
    DecodeError,
    decode_event,
    decode_record,
    decode_record_fastavro,
    encode_event,
    encode_record,
    encode_record_fastavro,
)
from compstream.codec.event_schemas import EVENT_RECORDS
from compstream.domain.event_fast import build_event
from compstream.domain.events import EventError, event_from_dict
from compstream.synth import generate

INT64 = (-(2**63), 2**63 - 1)
TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-7, minutes=-30))]))
# Mostly the sizes the worker writes (small counts, nano-dollar amounts), plus the int64 ends.
LONGS = st.one_of(st.integers(-130, 130), st.integers(-(10**15), 10**15), st.integers(*INT64),
                  st.sampled_from(INT64))
VALUES = {
    "string": st.text(st.characters(blacklist_categories=("Cs",)), max_size=80),
    "bytes": st.binary(max_size=80),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": LONGS,
    "boolean": st.booleans(),
    "timestamp": TIMES,
}


def records(name: str) -> st.SearchStrategy[dict]:
    kinds = avro_fast.field_kinds(SCHEMAS[name].parsed)
    assert kinds is not None
    fields = {}
    for field, kind, null_at in kinds:
        value = VALUES[kind]
        fields[field] = value if null_at is None else st.one_of(st.none(), value)
    return st.fixed_dictionaries(fields)


def test_every_schema_has_a_generated_codec_and_every_event_record_is_covered():
    assert set(EVENT_RECORDS) <= set(SCHEMAS)
    assert {"BalanceUpdate", "Alert", "DeadLetter"} <= set(SCHEMAS)
    for entry in SCHEMAS.values():
        assert entry.fast_encode is not None and entry.fast_decode is not None, entry.name


def _same_values(a: dict, b: dict) -> None:
    assert a == b
    for key in a:
        assert type(a[key]) is type(b[key]), key
        if isinstance(a[key], datetime):
            assert a[key].tzinfo is b[key].tzinfo is timezone.utc


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_bytes_and_values_are_fastavros(name, data):
    record = data.draw(records(name))
    entry = SCHEMAS[name]
    reference = encode_record_fastavro(name, record)
    # The generated encoder itself (not a fallback) writes the same bytes...
    assert entry.fast_encode(record, entry.header) == reference
    assert encode_record(name, record) == reference
    # ...and the generated decoder reads the same values, datetimes in UTC.
    _, expected = decode_record_fastavro(reference)
    _same_values(entry.fast_decode(reference, HEADER_LENGTH), expected)
    assert decode_record(reference) == (name, expected)
    assert decode_record(bytearray(reference)) == (name, expected)


def _outcome(decode, data):
    try:
        return decode(data)
    except DecodeError as exc:  # fastavro's reasons may name an object's address
        return ("error", exc.stage, re.sub(r" at 0x[0-9a-f]+", "", exc.reason))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncated_and_extended_bodies_are_body_errors(name, data):
    message = encode_record(name, data.draw(records(name)))
    cut = data.draw(st.integers(HEADER_LENGTH, len(message) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=4))
    for bad in (message[:cut], message + extra):
        outcome = _outcome(decode_record, bad)
        assert outcome[:2] == ("error", "body"), bad
        assert outcome == _outcome(decode_record_fastavro, bad)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupt_bodies_decode_as_fastavro_does(name, data):
    """Flipped bytes or random bodies: the same values, or the same DecodeError."""
    message = bytearray(encode_record(name, data.draw(records(name))))
    if data.draw(st.booleans()):
        body = data.draw(st.binary(max_size=60))
        message[HEADER_LENGTH:] = body
    else:
        at = data.draw(st.integers(HEADER_LENGTH, len(message) - 1))
        message[at] = data.draw(st.integers(0, 255))
    new, old = _outcome(decode_record, bytes(message)), _outcome(decode_record_fastavro, bytes(message))
    assert new == old
    if isinstance(new[1], dict):
        _same_values(new[1], old[1])


TIME_BODY = b"\x80\x80\x82\xe2\x88\xd2\xa3\x06"  # 2026-01-01 in micros, zig-zag


@pytest.mark.parametrize("name, body, why", [
    ("PeriodDigest", b"\x02a\x02b" + b"\x80" * 12 + b"\x00\x00\x00", "a varint longer than 10 bytes"),
    ("PeriodDigest", b"\x02a\x02b" + b"\xff" * 9 + b"\x7f\x00\x00", "a varint far beyond 64 bits"),
    ("PeriodDigest", b"\x02a\x02b" + b"\xff" * 9 + b"\x02\x00\x00", "a varint of 65 bits"),
    ("LeaderboardPrivacy", b"\x02a\x02b\x02" + TIME_BODY, "a boolean byte other than 0 and 1"),
    ("Alert", b"\x02e\x02k\x02\xff\xff\xff\xff\x7f\x02c" + TIME_BODY + b"\x00", "an int beyond 32 bits"),
    ("Alert", b"\x02e\x02k\x04\x02\x02c" + TIME_BODY + b"\x00", "a union index out of range"),
    ("Alert", b"\x02e\x02k\x80\x00\x02c" + TIME_BODY + b"\x00", "a union index in two bytes"),
    ("Alert", b"\x02e\x02\xff\x00\x02c" + TIME_BODY + b"\x00", "invalid UTF-8"),
])
def test_what_the_generated_decoder_declines_fastavro_answers(name, body, why):
    message = SCHEMAS[name].header + body
    with pytest.raises((avro_fast.Decline, UnicodeDecodeError)):  # decode_record catches any
        SCHEMAS[name].fast_decode(message, HEADER_LENGTH)
    assert _outcome(decode_record, message) == _outcome(decode_record_fastavro, message), why


def test_values_the_generated_encoder_declines_get_fastavros_answer():
    base = {"period": "2026-01", "digest": "d", "engineers": 1, "postings": 2,
            "computed_at": datetime(2026, 2, 1, tzinfo=timezone.utc)}
    entry = SCHEMAS["PeriodDigest"]
    for odd in ({"engineers": True}, {"computed_at": 1_767_225_600_000_000}, {"postings": 2**63},
                {"digest": b"d"}, {"computed_at": datetime(2026, 2, 1)}):
        record = base | odd
        if "engineers" not in odd:  # a bool is an int to both (True is 1)
            # (a naive datetime fails the subtraction from the aware epoch)
            with pytest.raises((avro_fast.Decline, TypeError)):
                entry.fast_encode(record, entry.header)
        try:
            expected: object = encode_record_fastavro("PeriodDigest", record)
        except Exception as exc:  # noqa: BLE001 - whatever fastavro raises, encode_record raises too
            with pytest.raises(type(exc)):
                encode_record("PeriodDigest", record)
        else:
            assert encode_record("PeriodDigest", record) == expected
    # A missing field with a default: fastavro fills it in.
    alert = {"engineer_id": "e", "kind": "k", "cause_event_id": "c",
             "event_time": datetime(2026, 2, 1, tzinfo=timezone.utc)}
    assert encode_record("Alert", alert) == encode_record_fastavro("Alert", alert)


def test_the_size_limit_still_holds():
    with pytest.raises(DecodeError) as info:
        decode_record(SCHEMAS["DeadLetter"].header + b"\x00" * MESSAGE_BYTES_MAX)
    assert info.value.stage == "framing"


def test_the_packed_writer_is_in_use():
    """protobuf (a dependency) with its C implementation: otherwise runs go
    through varints_py, correct but ~2x slower for a BalanceUpdate."""
    assert avro_fast._PACKED is not None


@settings(max_examples=300, deadline=None)
@given(values=st.lists(LONGS, max_size=40))
def test_packed_varints_are_avro_longs(values):
    assert avro_fast.varints(values) == avro_fast.varints_py(values)
    assert avro_fast.varints_py(values) == b"".join(
        encode_record_fastavro("PeriodDigest", {"period": "", "digest": "", "engineers": v, "postings": 0,
                                                "computed_at": datetime(2026, 1, 1, tzinfo=timezone.utc)})
        [HEADER_LENGTH + 2:-9] for v in values)


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.integers(*INT64), st.sampled_from(INT64)))
def test_every_long_reads_back(value):
    data = b"\x00" + avro_fast.varints_py([value]) + b"\x05"
    if data[1] < 128:
        assert avro_fast.ZIGZAG_BYTE[data[1]] == value
    else:
        assert avro_fast.long_rest(data, 2, data[1]) == (value, len(data) - 1)


# --- event schemas: the decoder straight to the event (SchemaEntry.fast_event)

def _reference_event(data):
    """decode_event as written before fast_event: the dict, then build_event or event_from_dict."""
    name, record = decode_record(data)
    record["type"] = EVENT_RECORDS[name]
    event = build_event(record)
    return event if event is not None else event_from_dict(record)


def _event_outcome(decode, data):
    try:
        event = decode(data)
    except (DecodeError, EventError) as exc:
        return ("error", type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc)))
    return (type(event), event, [type(getattr(event, name)) for name in event.__slots__])


@pytest.mark.parametrize("name", sorted(EVENT_RECORDS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_event_decoder_returns_what_build_event_makes_of_the_dict(name, data):
    """Any record (most values out of the events' ranges), now and then a
    flipped byte: the same event, or None where build_event declines (then
    decode_event's dict path gives the result or the error)."""
    message = bytearray(encode_record(name, data.draw(records(name))))
    if data.draw(st.booleans()):
        at = data.draw(st.integers(HEADER_LENGTH, len(message) - 1))
        message[at] = data.draw(st.integers(0, 255))
    message = bytes(message)
    assert _event_outcome(decode_event, message) == _event_outcome(_reference_event, message)
    fast = SCHEMAS[name].fast_event
    if fast is not None:
        try:
            _, record = decode_record(message)
        except DecodeError:
            return
        try:
            direct = fast(message, HEADER_LENGTH)
        except avro_fast.Decline:  # fastavro read what the generated code declines
            return
        assert direct == build_event({**record, "type": EVENT_RECORDS[name]})


def test_ledger_events_take_the_event_decoder():
    events = list(generate(5, 200, seed=3))
    assert {e.type for e in events} >= {"usage", "grant_issued"}
    for event in events:
        message = encode_event(event)
        entry = SCHEMAS[RECORD_BY_EVENT_TYPE[event.type]]
        assert entry.fast_event is not None
        assert entry.fast_event(message, HEADER_LENGTH) == event
        assert _event_outcome(decode_event, message) == _event_outcome(_reference_event, message)
