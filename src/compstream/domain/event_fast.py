"""Fast path of `events.event_from_dict` for the hot loops (JSONL replay, Avro
decode in the worker).

`build_event(raw)` returns exactly what `event_from_dict(raw)` returns, or
None when it cannot tell cheaply; the caller then runs the reference parser,
which also produces the error message. So the fast path accepts only what it
checks in a few type tests: exact built-in types, in-range integers, UTC
datetimes and canonical `YYYY-MM-DDTHH:MM:SS.ffffffZ` strings; HR events
always take the reference path (rare). tests/domain/test_event_fast.py checks
the equivalence on generated and malformed input.

The per-type builders are generated at import from `events.EVENT_FIELDS`
(the event dataclasses and the field vocabulary), so a new field is checked
and built here without an edit; `builder_source(cls)` shows the code.
Generated rather than looping over the specs per event: the written-out
checks are the ones the hand-written builders had (same speed, measured in
bench/profile_notes.md, 2026-12-06 "event shapes").
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from compstream.domain.events import (
    CORRECTION_FIELD,
    ENGINEER_ID_LENGTH_MAX,
    EVENT_FIELDS,
    EVENT_ID_LENGTH_MAX,
    LATER_THAN,
    LEDGER_EVENT_CLASSES,
    SIGNED_IN_CORRECTION,
    TEXT_LENGTH_MAX,
    Event,
    FieldSpec,
    Usage,
    event_type_of,
)
from compstream.domain.twin import fast_constructor

_UTC = timezone.utc
_fromiso = datetime.fromisoformat
# A log repeats a few engineer, provider and model names across millions of
# events; one shared string each cuts a 1M-event replay's memory by a third.
# Interned strings are freed with their last user: nothing is held extra.
_intern = sys.intern


def fast_time(value: Any) -> datetime | None:
    """`parse_time(value)` for the two shapes the hot paths see, else None."""
    tp = type(value)
    if tp is str:
        # parse_time rewrites a trailing Z to +00:00 and calls fromisoformat,
        # which reads `Z` itself as the same UTC offset, so for a string with
        # no surrounding space the two agree; the length keeps it to the
        # canonical `YYYY-MM-DDTHH:MM:SS.ffffffZ` size.
        if len(value) == 27 and value[26] == "Z":
            try:
                parsed = _fromiso(value)
            except ValueError:
                return None
            return parsed if parsed.tzinfo is _UTC else None
        return None
    if tp is datetime and value.tzinfo is _UTC:  # astimezone(UTC) would return it as is
        aware: datetime = value
        return aware
    return None


def _twin(cls: Any) -> Callable[..., Event]:
    """A constructor for the frozen dataclass `cls` that skips its
    object.__setattr__ per field (most of the cost of building an event),
    positional over its payload fields (`type` is its default): see
    domain/twin.py."""
    fields = tuple(spec.name for spec in EVENT_FIELDS[cls])
    if tuple(cls.__slots__) != fields + ("type",):
        raise TypeError(f"{cls.__name__}: slots are not its fields and `type`")
    if cls.__dataclass_fields__["type"].default != event_type_of(cls):
        raise TypeError(f"{cls.__name__}: `type` defaults to another event type")
    return fast_constructor(cls, fields)


# For callers that checked every field themselves (compstream.replay.jsonl_fast):
# the same positional fields as Usage, no validation here.
new_usage = _twin(Usage)

# Strings a log repeats across millions of events (see _intern above).
INTERNED = frozenset({"engineer_id", "provider", "model"})


def value_check(spec: FieldSpec, var: str, minimum: str | None = None) -> str:
    """Python source that is true when `var` is a valid value of `spec`
    (exact built-in types only: anything else declines); `minimum` replaces
    the vocabulary's minimum (a correction's signed range). Times are
    checked apart (fast_time)."""
    if spec.kind is str:
        check = f"type({var}) is str and 0 < len({var}) <= {spec.length_max}"
    elif spec.kind is int:
        # `type is int` also rules out bool, as events._int does.
        check = f"type({var}) is int and {minimum or spec.minimum} <= {var} <= {spec.maximum}"
    elif spec.kind is bool:
        check = f"type({var}) is bool"
    else:
        raise TypeError(f"{spec.name}: no value check for {spec.kind.__name__}")
    if spec.optional or spec.absent_as is not None:
        check = f"({var} is None or ({check}))"
    return check


def absent_as(var: str, value: int) -> str:
    """Source of `var`, or `value` when it is None (`var` was checked)."""
    return f"({var} or {value!r})" if not value else f"({value!r} if {var} is None else {var})"


def _range(spec: FieldSpec) -> tuple[int, int]:
    if spec.minimum is None or spec.maximum is None:
        raise TypeError(f"{spec.name} is signed in a correction but has no range")
    return spec.minimum, spec.maximum


def builder_source(cls: Any, positional: bool = False) -> str:
    """Source of the fast builder of `cls`, generated from its fields:
    `_build(_raw, event_id, engineer_id) -> event | None` (build_event has
    checked the two ids). The same checks a hand-written builder would
    inline (a call per field costs as much as the check). Its own names
    start with `_`, which no event field does (events._field_specs).
    `positional`: `_build(<every field, in EVENT_FIELDS order>)` instead,
    which checks the two ids as build_event does (for a decoder that has
    the values in hand: no dict in between)."""
    specs = [s for s in EVENT_FIELDS[cls] if s.name not in ("event_id", "engineer_id")]
    if positional:
        lines = [f"def _build({', '.join(s.name for s in EVENT_FIELDS[cls])}):",
                 f"    if (type(event_id) is not str or not 0 < len(event_id) <= {EVENT_ID_LENGTH_MAX}",
                 f"            or type(engineer_id) is not str or not 0 < len(engineer_id) <= {ENGINEER_ID_LENGTH_MAX}",
                 "            or not engineer_id.isprintable()):",
                 "        return None",
                 "    engineer_id = _intern(engineer_id)"]

        def get(name: str) -> str:
            return name
    else:
        lines = ["def _build(_raw, event_id, engineer_id):", "    _get = _raw.get"]

        def get(name: str) -> str:
            return f"_get({name!r})"
    minimums: dict[str, str] = {}
    names = {s.name for s in specs}
    if CORRECTION_FIELD in names:
        # A correction may be negative: the minimum of each signed range is
        # chosen once, before the checks.
        signed = [s for s in specs if s.name in SIGNED_IN_CORRECTION]
        ranges = dict.fromkeys(_range(s) for s in signed)
        lows = {r: f"_lo{i}" for i, r in enumerate(ranges)}
        minimums = {s.name: lows[_range(s)] for s in signed}
        limit = TEXT_LENGTH_MAX[CORRECTION_FIELD]
        if not positional:
            lines.append(f"    {CORRECTION_FIELD} = {get(CORRECTION_FIELD)}")
        lines.append(f"    if {CORRECTION_FIELD} is None:")
        lines += [f"        {var} = {low}" for (low, _), var in lows.items()]
        lines += [f"    elif type({CORRECTION_FIELD}) is str and 0 < len({CORRECTION_FIELD}) <= {limit}:"]
        lines += [f"        {var} = {-top}" for (_, top), var in lows.items()]
        lines += ["    else:", "        return None"]
    values = [s for s in specs if s.kind is not datetime and s.name != CORRECTION_FIELD]
    times = [s for s in specs if s.kind is datetime]
    if not positional:
        lines += [f"    {s.name} = {get(s.name)}" for s in values]
    if values:
        checks = "\n            and ".join(value_check(s, s.name, minimums.get(s.name)) for s in values)
        lines += [f"    if not ({checks}):", "        return None"]
    for s in times:
        if s.optional:
            lines += [f"    _{s.name} = {get(s.name)}",
                      f"    {s.name} = None if _{s.name} is None else _fast_time(_{s.name})",
                      f"    if {s.name} is None and _{s.name} is not None:", "        return None"]
        else:
            lines += [f"    {s.name} = _fast_time({get(s.name)})", f"    if {s.name} is None:",
                      "        return None"]
    for later, earlier in LATER_THAN.items():
        if later in names and earlier in names:
            lines += [f"    if {later} is not None and {later} <= {earlier}:", "        return None"]
    args = []
    for s in EVENT_FIELDS[cls]:
        arg = s.name
        if s.absent_as is not None:
            arg = absent_as(arg, s.absent_as)
        if s.name in INTERNED and s.name != "engineer_id":  # interned above or by build_event
            arg = f"_intern({arg})"
        args.append(arg)
    lines.append(f"    return _new({', '.join(args)})")
    return "\n".join(lines) + "\n"


def _builder(cls: Any, positional: bool = False) -> Callable[..., Event | None]:
    namespace: dict[str, Any] = {"_new": _twin(cls), "_fast_time": fast_time, "_intern": _intern}
    exec(builder_source(cls, positional), namespace)  # noqa: S102 - generated from EVENT_FIELDS
    build: Callable[..., Event | None] = namespace["_build"]
    return build


# HR events always take the reference path (rare).
_BUILDERS = {event_type_of(cls): _builder(cls) for cls in LEDGER_EVENT_CLASSES}
# event type -> (the field names, in order, build(*values) -> event | None):
# `build_event({"type": event type, **dict(zip(names, values))})`, for a
# caller that has the values at hand (the Avro decoder, codec/avro_codec.py).
POSITIONAL_BUILDERS = {event_type_of(cls): (tuple(s.name for s in EVENT_FIELDS[cls]), _builder(cls, True))
                       for cls in LEDGER_EVENT_CLASSES}


def build_event(raw: Any) -> Event | None:
    """event_from_dict(raw) when every check passes here, else None (then call
    event_from_dict for the result or the exact error)."""
    if type(raw) is not dict:
        return None
    kind = raw.get("type")
    build = _BUILDERS.get(kind) if type(kind) is str else None
    event_id, engineer_id = raw.get("event_id"), raw.get("engineer_id")
    # isprintable() is False for every control character (the reference check
    # rejects < 32 and 127); anything else unusual takes the reference path.
    if (build is None or type(event_id) is not str or not 0 < len(event_id) <= EVENT_ID_LENGTH_MAX
            or type(engineer_id) is not str or not 0 < len(engineer_id) <= ENGINEER_ID_LENGTH_MAX
            or not engineer_id.isprintable()):
        return None
    return build(raw, event_id, _intern(engineer_id))
