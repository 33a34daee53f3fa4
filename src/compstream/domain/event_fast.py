"""Fast path of `events.event_from_dict` for the hot loops (JSONL replay, Avro
decode in the worker).

`build_event(raw)` returns exactly what `event_from_dict(raw)` returns, or
None when it cannot tell cheaply; the caller then runs the reference parser,
which also produces the error message. So the fast path accepts only what it
checks in a few type tests: exact built-in types, in-range integers, UTC
datetimes and canonical `YYYY-MM-DDTHH:MM:SS.ffffffZ` strings; HR events
always take the reference path (rare). tests/domain/test_event_fast.py checks
the equivalence on generated and malformed input.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from collections.abc import Callable
from typing import Any

from compstream.domain.events import (
    AMOUNT_NANOS_MAX, ENGINEER_ID_LENGTH_MAX, EVENT_ID_LENGTH_MAX, GRANT_ID_LENGTH_MAX,
    GRANT_KIND_LENGTH_MAX, MODEL_LENGTH_MAX, PRICE_VERSION_LENGTH_MAX, PROVIDER_LENGTH_MAX,
    TOKENS_MAX, UNPRICED_REASON_LENGTH_MAX,
    EngineerOffboarded, Event, GrantIssued, GrantRevoked, Usage,
)

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


def _text(value: Any, length_max: int) -> bool:
    return type(value) is str and 0 < len(value) <= length_max


def _count(value: Any, minimum: int, maximum: int) -> bool:
    # `type is int` also rules out bool, as events._int does.
    return type(value) is int and minimum <= value <= maximum


def _twin(cls: Any, fields: tuple[str, ...], type_name: str) -> Callable[..., Event]:
    """A constructor for the frozen dataclass `cls` that skips its
    object.__setattr__ per field (most of the cost of building an event).
    It fills a mutable class with the same slot layout, then retypes the
    object as `cls`: the result is an ordinary, frozen `cls` instance."""
    if tuple(cls.__slots__) != fields + ("type",):
        raise TypeError(f"{cls.__name__} slots changed; update event_fast")
    args = ", ".join(fields)
    body = "".join(f"    self.{name} = {name}\n" for name in fields)
    src = (f"def __init__(self, {args}):\n{body}    self.type = {type_name!r}\n"
           f"    self.__class__ = _cls\n")
    namespace: dict[str, Any] = {"_cls": cls}
    exec(src, namespace)  # noqa: S102 - generated from the slot names above
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": cls.__slots__,
                                             "__init__": namespace["__init__"]})
    return twin


_NewUsage = _twin(Usage, (
    "event_id", "engineer_id", "provider", "model", "occurred_at", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "cost_nanos", "unpriced_reason", "price_version",
    "corrects_event_id"), "usage")
_NewGrant = _twin(GrantIssued, (
    "event_id", "engineer_id", "grant_id", "amount_nanos", "effective_at", "expires_at", "kind"),
    "grant_issued")
_NewRevoke = _twin(GrantRevoked, ("event_id", "engineer_id", "grant_id", "effective_at"),
                   "grant_revoked")
_NewOffboard = _twin(EngineerOffboarded, ("event_id", "engineer_id", "effective_at"),
                     "engineer_offboarded")
# For callers that checked every field themselves (compstream.replay.jsonl_fast):
# the same positional fields as Usage, no validation here.
new_usage = _NewUsage


def _usage(raw: dict[str, Any], event_id: str, engineer_id: str) -> Event | None:
    # The hottest builder: checks written out inline (a call per field costs
    # as much as the check).
    get = raw.get
    corrects = get("corrects_event_id")
    if corrects is None:
        lo = lo_cost = 0
    elif type(corrects) is str and 0 < len(corrects) <= EVENT_ID_LENGTH_MAX:
        lo, lo_cost = -TOKENS_MAX, -AMOUNT_NANOS_MAX  # a correction may be negative
    else:
        return None
    provider, model = get("provider"), get("model")
    input_tokens, output_tokens = get("input_tokens"), get("output_tokens")
    cache_read, cache_write = get("cache_read_tokens"), get("cache_write_tokens")
    cost, unpriced, version = get("cost_nanos"), get("unpriced_reason"), get("price_version")
    if not (type(provider) is str and 0 < len(provider) <= PROVIDER_LENGTH_MAX
            and type(model) is str and 0 < len(model) <= MODEL_LENGTH_MAX
            and type(input_tokens) is int and lo <= input_tokens <= TOKENS_MAX
            and type(output_tokens) is int and lo <= output_tokens <= TOKENS_MAX
            and (cache_read is None or (type(cache_read) is int and lo <= cache_read <= TOKENS_MAX))
            and (cache_write is None or (type(cache_write) is int and lo <= cache_write <= TOKENS_MAX))
            and (cost is None or (type(cost) is int and lo_cost <= cost <= AMOUNT_NANOS_MAX))
            and (unpriced is None or _text(unpriced, UNPRICED_REASON_LENGTH_MAX))
            and (version is None or _text(version, PRICE_VERSION_LENGTH_MAX))):
        return None
    occurred_at = fast_time(get("occurred_at"))
    if occurred_at is None:
        return None
    return _NewUsage(event_id, engineer_id, _intern(provider), _intern(model), occurred_at,
                     input_tokens, output_tokens, cache_read or 0, cache_write or 0, cost,
                     unpriced, version, corrects)


def _grant(raw: dict[str, Any], event_id: str, engineer_id: str) -> Event | None:
    get = raw.get
    grant_id, amount, kind = get("grant_id"), get("amount_nanos"), get("kind")
    if not (_text(grant_id, GRANT_ID_LENGTH_MAX) and _count(amount, 1, AMOUNT_NANOS_MAX)
            and _text(kind, GRANT_KIND_LENGTH_MAX)):
        return None
    effective_at = fast_time(get("effective_at"))
    expires_raw = get("expires_at")
    expires_at = None if expires_raw is None else fast_time(expires_raw)
    if effective_at is None or (expires_raw is not None and (
            expires_at is None or expires_at <= effective_at)):
        return None
    return _NewGrant(event_id, engineer_id, grant_id, amount, effective_at, expires_at, kind)


def _revoke(raw: dict[str, Any], event_id: str, engineer_id: str) -> Event | None:
    grant_id = raw.get("grant_id")
    effective_at = fast_time(raw.get("effective_at"))
    if not _text(grant_id, GRANT_ID_LENGTH_MAX) or effective_at is None:
        return None
    return _NewRevoke(event_id, engineer_id, grant_id, effective_at)


def _offboard(raw: dict[str, Any], event_id: str, engineer_id: str) -> Event | None:
    effective_at = fast_time(raw.get("effective_at"))
    return None if effective_at is None else _NewOffboard(event_id, engineer_id, effective_at)


_BUILDERS = {"usage": _usage, "grant_issued": _grant, "grant_revoked": _revoke,
             "engineer_offboarded": _offboard}


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
