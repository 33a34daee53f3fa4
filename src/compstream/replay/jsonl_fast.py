"""The fast path from one JSON Lines record to an event, for replay.

Nearly every line of a usage log is a plain usage event (no correction).
msgspec decodes such a line and checks its types, lengths and ranges in one
C call; `line_event` then checks what msgspec cannot (canonical UTC time,
printable engineer id) and builds the Usage. The msgspec struct and the
Usage construction are generated at import from Usage's fields
(events.EVENT_FIELDS): a new field needs no edit here. Any line it declines (other
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
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Optional

import msgspec
import orjson

from compstream.domain.event_fast import INTERNED, absent_as, build_event, fast_time, new_usage
from compstream.domain.events import CORRECTION_FIELD, EVENT_FIELDS, LATER_THAN, Event, FieldSpec, Usage, event_type_of


def _line_type(spec: FieldSpec) -> tuple[str, Any] | tuple[str, Any, None]:
    """The msgspec field of `spec` in a plain usage line: msgspec checks the
    type and the limits; a time stays a string (fast_time reads it)."""
    if spec.name == CORRECTION_FIELD:
        # A correction declines here: only there may tokens and cost be negative.
        return (spec.name, None, None)
    tp: Any
    if spec.kind is str:
        tp = Annotated[str, msgspec.Meta(min_length=1, max_length=spec.length_max)]
    elif spec.kind is int:
        tp = Annotated[int, msgspec.Meta(ge=spec.minimum, le=spec.maximum)]
    elif spec.kind is bool:
        tp = bool
    else:
        tp = str
    if spec.optional or spec.absent_as is not None:
        return (spec.name, Optional[tp], None)
    return (spec.name, tp)


def line_struct(cls: Any = Usage) -> Any:
    """The msgspec struct of a plain (not correcting) line of event `cls`."""
    fields: list[Any] = [("type", Literal[event_type_of(cls)])]
    return msgspec.defstruct(f"_{cls.__name__}Line", fields + [_line_type(s) for s in EVENT_FIELDS[cls]],
                             gc=False, kw_only=True)


_UsageLine = line_struct(Usage)

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


# line_event, with the Usage built from the decoded line where {build} stands
# (generated from Usage's fields below: written out, as a call per line would
# cost a few percent of the parse).
_LINE_EVENT = """
def line_event(_raw):
    _u = None
    # msgspec does not check the UTF-8 of keys it skips; Python's codec does
    # (ASCII, nearly every line, is valid UTF-8 as it stands).
    if _raw.isascii() or _utf8(_raw):
        try:
            _u = _decode(_raw)
        except _DecodeError:
            pass
    if _u is not None:
{build}
    try:
        return _build_event(_loads(_raw))
    except _JSONDecodeError:
        return None
"""


def line_event_source(cls: Any = Usage) -> str:
    """Source of line_event for plain lines of event `cls` (Usage); its own
    names start with `_`, which no event field does."""
    specs = EVENT_FIELDS[cls]
    times = [s for s in specs if s.kind is datetime]
    lines = [f"        {s.name} = _fast_time(_u.{s.name})" if not s.optional else
             f"        {s.name} = None if _u.{s.name} is None else _fast_time(_u.{s.name})"
             for s in times]
    lines.append("        engineer_id = _u.engineer_id")
    # isprintable(): as event_fast, any control character declines.
    checks = [f"{s.name} is not None" if not s.optional else
              f"({s.name} is not None or _u.{s.name} is None)" for s in times]
    names = {s.name for s in specs}
    checks += [f"({later} is None or {later} > {earlier})" for later, earlier in LATER_THAN.items()
               if later in names and earlier in names]
    checks.append("engineer_id.isprintable()")
    args = []
    for s in specs:
        arg = s.name if s.kind is datetime or s.name == "engineer_id" else f"_u.{s.name}"
        if s.name == CORRECTION_FIELD:
            arg = "None"  # the struct only admits None there
        elif s.absent_as is not None:
            arg = absent_as(arg, s.absent_as)
        if s.name in INTERNED:
            arg = f"_intern({arg})"
        args.append(arg)
    lines += [f"        if {' and '.join(checks)}:", f"            return _new({', '.join(args)})"]
    return _LINE_EVENT.replace("{build}", "\n".join(lines))


def _line_event() -> Callable[[bytes], Event | None]:
    namespace: dict[str, Any] = {
        "_utf8": _utf8, "_decode": _decode, "_DecodeError": _DecodeError, "_fast_time": fast_time,
        "_intern": _intern, "_new": new_usage, "_build_event": build_event, "_loads": _loads,
        "_JSONDecodeError": _JSONDecodeError}
    exec(line_event_source(), namespace)  # noqa: S102 - generated from EVENT_FIELDS[Usage]
    fn: Callable[[bytes], Event | None] = namespace["line_event"]
    fn.__doc__ = ("The event of one JSON Lines record, or None: then the caller's "
                  "reference parser decides (and words the error).")
    return fn


line_event = _line_event()
