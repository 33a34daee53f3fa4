"""The fast path from one JSON Lines record to an event, for replay.

Nearly every line of a usage log is a plain usage event (no correction).
msgspec decodes such a line and checks its types, lengths and ranges in one
C call; `line_event` then checks what msgspec cannot (canonical UTC time,
printable engineer id) and builds the Usage. Any line it declines (other
event types, corrections, odd JSON or values) takes the orjson +
event_fast path, and what that declines goes to the caller's reference
parser, so every result and error message stays the reference one
(tests/domain/test_event_fast.py compares them on generated and broken lines).

Why the two agree: msgspec, like the stdlib json, keeps the last of repeated
keys, unescapes keys, ignores unknown keys and keeps ints exact; it refuses
floats and booleans for ints and null for required strings, and every
refusal falls back. It does not check the UTF-8 of a key it skips, so only
lines that are valid UTF-8 reach it. Limits are the ones event_from_dict
checks.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

import msgspec
import orjson

from compstream.domain.event_fast import build_event, fast_time, new_usage
from compstream.domain.events import (
    AMOUNT_NANOS_MAX, ENGINEER_ID_LENGTH_MAX, EVENT_ID_LENGTH_MAX, MODEL_LENGTH_MAX,
    PRICE_VERSION_LENGTH_MAX, PROVIDER_LENGTH_MAX, TOKENS_MAX, UNPRICED_REASON_LENGTH_MAX, Event,
)

_Tokens = Annotated[int, msgspec.Meta(ge=0, le=TOKENS_MAX)]


def _text(length_max: int) -> object:  # a type for msgspec: Annotated[str, Meta]
    return Annotated[str, msgspec.Meta(min_length=1, max_length=length_max)]


class _UsageLine(msgspec.Struct, gc=False):
    """A usage event that is not a correction (a correction declines here:
    only there may tokens and cost be negative)."""

    type: Literal["usage"]
    event_id: _text(EVENT_ID_LENGTH_MAX)  # type: ignore[valid-type]
    engineer_id: _text(ENGINEER_ID_LENGTH_MAX)  # type: ignore[valid-type]
    provider: _text(PROVIDER_LENGTH_MAX)  # type: ignore[valid-type]
    model: _text(MODEL_LENGTH_MAX)  # type: ignore[valid-type]
    occurred_at: str
    input_tokens: _Tokens
    output_tokens: _Tokens
    cache_read_tokens: _Tokens | None = None
    cache_write_tokens: _Tokens | None = None
    cost_nanos: Annotated[int, msgspec.Meta(ge=0, le=AMOUNT_NANOS_MAX)] | None = None
    unpriced_reason: _text(UNPRICED_REASON_LENGTH_MAX) | None = None  # type: ignore[valid-type]
    price_version: _text(PRICE_VERSION_LENGTH_MAX) | None = None  # type: ignore[valid-type]
    corrects_event_id: None = None


_decode = msgspec.json.Decoder(_UsageLine).decode
_DecodeError = msgspec.DecodeError  # ValidationError is a subclass
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_intern = sys.intern


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def line_event(raw: bytes) -> Event | None:
    """The event of one JSON Lines record, or None: then the caller's
    reference parser decides (and words the error)."""
    u = None
    # msgspec does not check the UTF-8 of keys it skips; Python's codec does
    # (ASCII, nearly every line, is valid UTF-8 as it stands).
    if raw.isascii() or _utf8(raw):
        try:
            u = _decode(raw)
        except _DecodeError:
            pass
    if u is not None:
        occurred_at = fast_time(u.occurred_at)
        engineer_id = u.engineer_id
        # isprintable(): as event_fast, any control character declines.
        if occurred_at is not None and engineer_id.isprintable():
            return new_usage(u.event_id, _intern(engineer_id), _intern(u.provider),
                             _intern(u.model), occurred_at, u.input_tokens, u.output_tokens,
                             u.cache_read_tokens or 0, u.cache_write_tokens or 0, u.cost_nanos,
                             u.unpriced_reason, u.price_version, None)
    try:
        return build_event(_loads(raw))
    except _JSONDecodeError:
        return None
