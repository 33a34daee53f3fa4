"""The hot-path shortcuts equal their reference implementations:
event_fast.build_event vs event_from_dict, replay.file.parse_line and
jsonl_fast.line_event (msgspec, orjson) vs parse_line_reference (stdlib json), format_time vs strftime, the book's
fingerprint text vs payload_fingerprint and book_codec.pack vs json.dumps.
Generated valid input, then the same input broken in many ways."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from ledger_support import PROPS

from compstream.domain import book_codec
from compstream.domain.event_fast import build_event, fast_time
from compstream.domain.events import (
    EVENT_FIELDS,
    INT_RANGE,
    TEXT_LENGTH_MAX,
    EngineerOffboarded,
    EventError,
    GrantIssued,
    GrantRevoked,
    Usage,
    event_from_dict,
    event_to_dict,
    format_time,
    parse_time,
    payload_fingerprint,
)
from compstream.replay import jsonl_fast
from compstream.replay.file import BadLine, document_text, parse_line, parse_line_reference, read_jsonl

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# ------------------------------------------------------------- strategies
_times = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 1, 1),
                      timezones=st.just(UTC))
_plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
_any_text = st.text(max_size=12)  # control characters, non-ASCII, empty
# Lengths at every limit of the vocabulary (the fast parsers are built from
# it; event_from_dict must check the same).
_LENGTHS = sorted({0, 1} | {n + d for n in TEXT_LENGTH_MAX.values() for d in (-1, 0, 1)})
_at_limits = st.sampled_from(_LENGTHS).map(lambda n: "x" * n)
# Integers at every range bound, and at the signed bounds of a correction.
_BOUNDS = sorted({b + d for lo, hi in INT_RANGE.values() for b in (lo, hi, -hi) for d in (-1, 0, 1)})
_ids = st.one_of(_plain, _plain, _any_text, _at_limits)
_tokens = st.integers(-10, 10**6) | st.sampled_from(_BOUNDS)
_nanos = st.integers(-5, 10**12) | st.sampled_from(_BOUNDS)


@st.composite
def valid_events(draw, text=_plain):
    eid, eng = draw(text), draw(text)
    kind = draw(st.sampled_from(["usage", "usage", "correction", "grant", "revoke", "offboard"]))
    t = draw(_times)
    if kind == "grant":
        exp = draw(st.none() | st.timedeltas(timedelta(microseconds=1), timedelta(days=90)))
        return GrantIssued(eid, eng, draw(text), draw(st.integers(1, 10**18)), t,
                           None if exp is None else t + exp, draw(text))
    if kind == "revoke":
        return GrantRevoked(eid, eng, draw(text), t)
    if kind == "offboard":
        return EngineerOffboarded(eid, eng, t)
    lo = -10**15 if kind == "correction" else 0
    return Usage(eid, eng, draw(text), draw(text), t, *(draw(st.integers(lo, 10**15)) for _ in range(4)),
                 draw(st.none() | st.integers(-10**18 if lo else 0, 10**18)),
                 draw(st.none() | text), draw(st.none() | text),
                 draw(text) if kind == "correction" else None)


_nasty = st.one_of(
    st.none(), st.booleans(), _tokens, _nanos, st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), _any_text, _ids, _at_limits,
    st.sampled_from([
        "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000z", "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.000000+00:00", "2026-01-01T05:00:00.000000+05:00",
        " 2026-01-01T00:00:00.00000Z", "2026-01-01T00:00:00.000000Z ", "\t2026-01-01T00:00:00.00000Z",
        "2026-01-01 00:00:00.000000Z", "2026-01-01T00:00:00,000000Z", "20260101T000000.0000000000Z",
        "2026-13-01T00:00:00.000000Z", "2026-02-30T00:00:00.000000Z", "2026-01-01T24:00:00.000000Z",
        "２０２６-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000", "2026-W01-1T00:00:00.00000Z",
        "0999-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z", "",
    ]),
    _times, st.datetimes(timezones=st.none() | st.just(timezone(timedelta(hours=-3)))),
    st.lists(st.integers(), max_size=2), st.dictionaries(_plain, st.integers(), max_size=2),
)
# Every field of every event: a field added to the definition is broken here too.
_FIELDS = sorted({"type"} | {s.name for specs in EVENT_FIELDS.values() for s in specs})


@st.composite
def broken_dicts(draw):
    raw = event_to_dict(draw(valid_events(_ids)))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(_FIELDS))
        if draw(st.booleans()):
            raw[name] = draw(_nasty)
        else:
            raw.pop(name, None)
    if draw(st.booleans()):  # Avro hands over datetimes, JSON strings
        for name in ("effective_at", "expires_at", "occurred_at"):
            if isinstance(raw.get(name), str) and draw(st.booleans()):
                try:
                    raw[name] = parse_time(raw[name], name)
                except EventError:
                    pass
    return raw


# ------------------------------------------------------------- helpers
def _outcome(fn, arg):
    try:
        return "ok", fn(arg)
    except EventError as exc:
        return "error", str(exc)


def _same(a, b) -> None:
    """Equal results, also in type and tzinfo (== alone ignores both)."""
    assert a == b
    if a[0] == "ok":
        assert type(a[1]) is type(b[1])
        for f in dataclasses.fields(a[1]):
            x, y = getattr(a[1], f.name), getattr(b[1], f.name)
            assert type(x) is type(y)
            if isinstance(x, datetime):
                assert x.tzinfo is y.tzinfo


def _check_build(raw) -> object:
    fast = build_event(raw)
    ref = _outcome(event_from_dict, raw)
    if fast is not None:
        _same(("ok", fast), ref)
    return fast


# ------------------------------------------------------------- build_event
@PROPS
@given(valid_events())
def test_build_event_takes_the_fast_path_on_canonical_events(event):
    raw = event_to_dict(event)
    assert _check_build(raw) is not None
    assert _check_build({k: parse_time(v, k) if k.endswith("_at") and v else v
                         for k, v in raw.items()}) is not None  # as Avro decodes it


@PROPS
@given(broken_dicts())
def test_build_event_equals_event_from_dict_or_declines(raw):
    _check_build(raw)


_BASES = [
    Usage("u1", "e1", "p", "m", T0, 1, 2, 3, 4, 5, "why", "v1"),
    Usage("u2", "e1", "p", "m", T0, -1, -2, -3, -4, -5, None, None, "u1"),
    GrantIssued("g1", "e1", "G1", 10, T0, T0 + timedelta(days=1), "monthly"),
    GrantIssued("g2", "e1", "G2", 10, T0, None, "bonus"),
    GrantRevoked("r1", "e1", "G1", T0), EngineerOffboarded("o1", "e1", T0),
]
_EDGES = [
    None, True, False, 1.0, 1.5, float("nan"), 2**64, 2**70, -2**70, *_BOUNDS,
    "e\x1f", "e\x7f", "e\u0085", "é", " ", [], {}, ["x"], *("x" * n for n in _LENGTHS),
    T0, T0.replace(tzinfo=None), T0.astimezone(timezone(timedelta(hours=5))),
    "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000001Z", "2025-12-31T23:59:59.999999Z",
    "2026-01-01T00:00:00.000000z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000000+00:00",
    " 2026-01-01T00:00:00.00000Z", "2026-01-01 00:00:00.000000Z", "20260101T000000.0000000000Z",
    "2026-02-30T00:00:00.000000Z", "２０２６-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000",
    "usage", "grant_issued", "team_assigned",
]


def _edge_dicts():
    for base in _BASES:
        canonical = event_to_dict(base)
        for name in _FIELDS:
            for value in [*_EDGES, "missing"]:
                raw = dict(canonical)
                if value == "missing":
                    raw.pop(name, None)
                else:
                    raw[name] = value
                yield raw


def test_build_event_field_by_field_at_every_limit():
    """Each field of each event type replaced by each edge value (or removed):
    the fast path must equal event_from_dict or decline."""
    accepted = 0
    for raw in _edge_dicts():
        accepted += _check_build(raw) is not None
        line = json.dumps(raw, default=str).encode("utf-8", "surrogatepass")
        _same(_outcome(parse_line, line), _outcome(parse_line_reference, line))
    assert accepted > 1000  # the fast path is really taken, not declined wholesale


def test_read_jsonl_equals_line_by_line_reference_parsing(tmp_path):
    """read_jsonl inlines parse_line: same events, same bad lines and numbers."""
    lines = [json.dumps(raw, default=str).encode() for raw in _edge_dicts()]
    lines[5:5] = [b"", b"  \t", b"{not json", b"\xff"]
    path = tmp_path / "edges.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    want_events, want_bad = [], []
    for number, line in enumerate(lines, 1):
        if line.strip():
            kind, value = _outcome(parse_line_reference, line)
            if kind == "ok":
                want_events.append(value)
            else:
                want_bad.append(BadLine(str(path), number, value))
    bad: list = []
    assert list(read_jsonl([path], bad.append)) == want_events
    assert bad == want_bad and len(want_events) > 1000 and len(want_bad) > 1000


@pytest.mark.parametrize("raw", [
    None, [], "usage", {}, {"type": ["usage"]}, {"type": "team_assigned"},
    {"type": "usage", "event_id": "a", "engineer_id": "e\x7f"},
    {"type": "usage", "event_id": "a", "engineer_id": "e\u0085"},  # not printable, still accepted
])
def test_build_event_declines_the_odd_cases(raw):
    assert build_event(raw) is None
    if isinstance(raw, dict) and raw.get("engineer_id") == "e\u0085":
        with pytest.raises(EventError, match="provider"):
            event_from_dict(raw)


def test_fast_built_events_are_ordinary_frozen_dataclasses():
    raw = event_to_dict(Usage("u1", "e1", "p", "m", T0, 1, 2, 0, 0, 5))
    event = build_event(raw)
    assert type(event) is Usage and event == event_from_dict(raw)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.cost_nanos = 6
    assert hash(event) == hash(event_from_dict(raw))
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event and repr(event) == repr(event_from_dict(raw))
    assert dataclasses.replace(event, cost_nanos=6).cost_nanos == 6
    assert payload_fingerprint(event) == payload_fingerprint(event_from_dict(raw))


@PROPS
@given(_nasty)
@example("2026-01-01T00:00:00.000000Z")
def test_fast_time_equals_parse_time_or_declines(value):
    fast = fast_time(value)
    if fast is not None:
        ref = parse_time(value, "t")
        assert fast == ref and fast.tzinfo is ref.tzinfo is UTC


# ------------------------------------------------------------- parse_line
_MUTATIONS = ["none", "none", "byte", "drop", "insert", "bom", "crlf", "dup_key", "surrogate", "nan",
              "big_int", "invalid_utf8", "truncate", "not_object", "space"]


@st.composite
def lines(draw):
    raw = draw(broken_dicts()) if draw(st.booleans()) else event_to_dict(draw(valid_events(_ids)))
    raw = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in raw.items()}
    # Real logs are compact; json.dumps's default spacing is legal JSON too.
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    text = json.dumps(raw, ensure_ascii=draw(st.booleans()), separators=separators)
    data = text.encode("utf-8", "surrogatepass")
    mutation = draw(st.sampled_from(_MUTATIONS))
    pos = draw(st.integers(0, max(0, len(data) - 1)))
    if mutation == "byte" and data:
        data = data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1:]
    elif mutation == "drop":
        data = data[:pos] + data[pos + 1:]
    elif mutation == "insert":
        data = data[:pos] + draw(st.sampled_from([b" ", b"\t", b"\x0c", b"\\", b'"', b",", b"\x00"])) + data[pos:]
    elif mutation == "bom":
        data = b"\xef\xbb\xbf" + data
    elif mutation == "crlf":
        data += b"\r\n"
    elif mutation == "dup_key":  # JSON objects with a repeated key: the last one wins
        data = b'{"cost_nanos": -1, "amount_nanos": 7, "type": "usage", ' + data[1:]
    elif mutation == "surrogate":
        data = data.replace(b'"event_id":', b'"event_id":"\\ud800", "event_id":', 1)
    elif mutation == "nan":
        data = data.replace(b'"type"', b'"x":NaN, "type"', 1)
    elif mutation == "big_int":
        data = data.replace(b'"type"', b'"cost_nanos":123456789012345678901234567890, "type"', 1)
    elif mutation == "invalid_utf8":
        data = data[:pos] + b"\xed\xa0\x80" + data[pos:]
    elif mutation == "truncate":
        data = data[:pos]
    elif mutation == "not_object":
        data = b"[" + data + b"]"
    elif mutation == "space":
        data = b"  " + data + b"  \n"
    return data


@PROPS
@given(lines())
def test_parse_line_equals_the_stdlib_reference(data):
    _same(_outcome(parse_line, data), _outcome(parse_line_reference, data))


def test_parse_line_reference_messages_are_kept():
    good = json.dumps(event_to_dict(Usage("u1", "e1", "p", "m", T0, 1, 2, 0, 0, 5))).encode()
    assert parse_line(good) == parse_line_reference(good)
    for bad, reason in [(b"{not json", "invalid JSON"), (b"\xff{}", "not UTF-8"),
                        (b'{"type": "usage", "event_id": "x", "engineer_id": "e1"}', "provider: missing"),
                        (good.replace(b'"cost_nanos": 5', b'"cost_nanos": 1e3'), "expected an integer"),
                        (good.replace(b"2026-01-01T00:00:00.000000Z", b"2026-01-01T00:00:00"),
                         "no time zone")]:
        with pytest.raises(EventError, match=reason):
            parse_line(bad)


@PROPS
@given(lines())
def test_line_event_equals_the_stdlib_reference_or_declines(data):
    fast = jsonl_fast.line_event(data)
    if fast is not None:
        _same(("ok", fast), _outcome(parse_line_reference, data))


def _usage_line(ascii: bool = True, **changes) -> bytes:
    raw = event_to_dict(Usage("u1", "e1", "anthropic", "m", T0, 1, 2, 3, 4, 5))
    raw.update(changes)
    return json.dumps({k: v for k, v in raw.items() if v is not _DROP}, separators=(",", ":"),
                      ensure_ascii=ascii).encode()


_DROP = object()
_USAGE_SPECS = [s for s in EVENT_FIELDS[Usage] if s.name != "corrects_event_id"]


def _limit_lines():
    """A plain usage line with one field at, or just past, each limit."""
    for s in _USAGE_SPECS:
        if s.kind is str:
            values = ["x" * s.length_max, "x" * (s.length_max + 1), ""]
        elif s.kind is int:
            values = [s.minimum, s.minimum - 1, s.maximum, s.maximum + 1, True, 1.0]
        else:
            values = []
        for value in [*values, None, _DROP]:
            yield _usage_line(**{s.name: value})


@pytest.mark.parametrize("line", [
    _usage_line(), _usage_line(cost_nanos=None, unpriced_reason="no price"),
    _usage_line(cache_read_tokens=None, cache_write_tokens=_DROP, price_version="v1"),
    _usage_line(corrects_event_id=None, extra={"ignored": [1, 2]}),
    _usage_line(input_tokens=10**15, output_tokens=0, cost_nanos=10**18),
    _usage_line(**{s.name: "x" * s.length_max for s in _USAGE_SPECS if s.kind is str and s.name != "engineer_id"}),
    _usage_line(**{s.name: s.maximum for s in _USAGE_SPECS if s.kind is int}),
    _usage_line(event_id="i" * 256, engineer_id="é" * 256),
    _usage_line(False, event_id="i" * 256, engineer_id="é" * 256, model="模型"),  # UTF-8 as it stands
])
def test_line_event_takes_msgspec_on_plain_usage_lines(line):
    jsonl_fast._decode(line)  # raises if msgspec declined
    event = jsonl_fast.line_event(line)
    _same(("ok", event), _outcome(parse_line_reference, line))


@pytest.mark.parametrize("line", [
    _usage_line(corrects_event_id="u0", input_tokens=-5, cost_nanos=-7),  # corrections: orjson path
    *_limit_lines(), _usage_line(engineer_id="e\u0001"), _usage_line(engineer_id="e\u0085"),
    _usage_line(occurred_at="2026-01-01T00:00:00Z"), _usage_line(occurred_at="2026-01-01T05:00:00.000000+05:00"),
    _usage_line(occurred_at=1767225600), _usage_line(type="grant_issued"), _usage_line(type="Usage"),
    _usage_line()[:-1], b"[" + _usage_line() + b"]", _usage_line().replace(b'"m"', b'"m" "x"'),
    # repeated keys: the last one counts, in msgspec as in json
    _usage_line().replace(b'"input_tokens":1', b'"input_tokens":"x","input_tokens":1'),
    _usage_line().replace(b'"input_tokens":1', b'"input_tokens":1,"input_tokens":"x"'),
    _usage_line().replace(b'"input_tokens":1', b'"input_tokens":1,"input_tokens":-1'),
    _usage_line().replace(b'"type":"usage"', b'"type":"usage","type":"grant_issued"'),
    _usage_line().replace(b'"engineer_id"', b'"engineer_id":"e2","engin\\u0065er_id"'),
    # Invalid UTF-8 where msgspec does not look (a key or value it skips):
    # json rejects the line, so msgspec must never see it.
    _usage_line().replace(b'"type"', b'"\x80x":null,"type"'),
    _usage_line().replace(b'"type"', b'"x":"\xed\xa0\x80","type"'),
    _usage_line().replace(b'"type"', b'"x":"\xc0\xaf","type"'),  # overlong "/"
])
def test_line_event_agrees_at_every_limit_and_odd_case(line):
    fast = jsonl_fast.line_event(line)
    ref = _outcome(parse_line_reference, line)
    if fast is not None:  # a decline is never wrong: parse_line then asks the reference
        _same(("ok", fast), ref)
    _same(_outcome(parse_line, line), ref)


# ------------------------------------------------------------- encoders
@PROPS
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC) | st.just(timezone(timedelta(hours=5, minutes=30)))))
@example(datetime(999, 1, 1, tzinfo=UTC))
@example(datetime(1000, 1, 1, tzinfo=UTC))
def test_format_time_equals_strftime(value):
    assert format_time(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@PROPS
@given(valid_events(st.text(min_size=1, max_size=8)), st.sampled_from([None, 1.5, 2**70, "x"]))
def test_fingerprint_text_equals_payload_fingerprint(event, odd_cost):
    assert book_codec.fingerprint_text(event) == payload_fingerprint(event)
    if type(event) is Usage:  # hand-built events may hold what decoding never gives
        odd = dataclasses.replace(event, cost_nanos=odd_cost)
        assert book_codec.fingerprint_text(odd) == payload_fingerprint(odd)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12)


@PROPS
@given(st.lists(_json_values, min_size=len(book_codec.STATE_FIELDS), max_size=len(book_codec.STATE_FIELDS)))
def test_pack_equals_the_json_encoding(values):
    """dumps_compact is json.dumps (compact, raw UTF-8), also where orjson
    refuses (ints beyond 64 bits); pack writes the fields as one array, in
    STATE_FIELDS order, and the spliced pack writes the same bytes."""
    state = dict(zip(book_codec.STATE_FIELDS, values, strict=True))
    seen = book_codec.SeenIds()
    body = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packed = book_codec.pack(state, seen)
    assert packed[book_codec._HEADER.size:] == body
    assert book_codec.unpack(packed)[0] == state
    at = book_codec.STATE_FIELDS.index("p")
    if isinstance(values[at], list):
        items = [book_codec.dumps_compact(v) for v in values[at]]
        assert book_codec.pack_spliced(values[:at], items, values[at + 1:], seen) == packed


def test_pack_keeps_json_errors():
    state = dict.fromkeys(book_codec.STATE_FIELDS, 0)
    with pytest.raises(UnicodeEncodeError):
        book_codec.pack({**state, "e": "\ud800"}, book_codec.SeenIds())
    with pytest.raises(book_codec.BookCodecError, match="fields"):
        book_codec.pack({"e": "x"}, book_codec.SeenIds())


@pytest.mark.parametrize("engineers", [
    {}, {"eng-1": {"issued_nanos": 5, "available_nanos": -2}},
    {"é": {"issued_nanos": 1}}, {'q"\\': {"x": 0}}, {"d\x7f": {"x": 1}},
    {"big": {"issued_nanos": 2**70}},
])
def test_document_text_equals_json_dumps(engineers):
    for as_of in (None, "2026-01-01T00:00:00.000000Z"):
        doc = {"as_of": as_of, "engineers": engineers}
        assert document_text(doc) == json.dumps(doc, indent=2) + "\n"
