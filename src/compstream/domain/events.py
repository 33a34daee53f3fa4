"""Canonical events: the one shape every source, topic, file and table agrees on.

Field names follow the ledger contract. Money is integer nano-dollars, time is a
UTC datetime with microsecond precision. Parsing raises `EventError` with the
field at fault; it never guesses.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Union, get_args, get_type_hints, overload

import orjson

EVENT_ID_LENGTH_MAX = 256
ENGINEER_ID_LENGTH_MAX = 256
# Field limits, named once: the fast parsers (event_fast, jsonl_fast) check
# the same ones and must agree with event_from_dict.
GRANT_ID_LENGTH_MAX = 256
GRANT_KIND_LENGTH_MAX = 64
PROVIDER_LENGTH_MAX = 64
MODEL_LENGTH_MAX = 256
UNPRICED_REASON_LENGTH_MAX = 512
PRICE_VERSION_LENGTH_MAX = 128
TEAM_ID_LENGTH_MAX = 128
# A single event above a billion dollars is a unit error, not a real grant.
AMOUNT_NANOS_MAX = 10**18
TOKENS_MAX = 10**15

# --- The field vocabulary: a field name means the same thing, with the same
# limits, in every event. Together with the event dataclasses below (names,
# order, types, optionality) this is the one definition of an event's shape:
# `event_fields` joins the two, and the fast parsers (event_fast, jsonl_fast)
# and the history row columns are built from it at import; the Avro schemas
# and the history DDL are checked against it (tests/domain/test_event_shapes.py).
# event_from_dict stays written out (the reference, and the wording of every
# error); the equivalence tests hold it to the same limits.
TEXT_LENGTH_MAX: dict[str, int] = {
    "event_id": EVENT_ID_LENGTH_MAX,
    "engineer_id": ENGINEER_ID_LENGTH_MAX,
    "grant_id": GRANT_ID_LENGTH_MAX,
    "kind": GRANT_KIND_LENGTH_MAX,
    "provider": PROVIDER_LENGTH_MAX,
    "model": MODEL_LENGTH_MAX,
    "unpriced_reason": UNPRICED_REASON_LENGTH_MAX,
    "price_version": PRICE_VERSION_LENGTH_MAX,
    "corrects_event_id": EVENT_ID_LENGTH_MAX,
    "team_id": TEAM_ID_LENGTH_MAX,
}
INT_RANGE: dict[str, tuple[int, int]] = {
    "amount_nanos": (1, AMOUNT_NANOS_MAX),
    "input_tokens": (0, TOKENS_MAX),
    "output_tokens": (0, TOKENS_MAX),
    "cache_read_tokens": (0, TOKENS_MAX),
    "cache_write_tokens": (0, TOKENS_MAX),
    "cost_nanos": (0, AMOUNT_NANOS_MAX),
    "annual_cash_nanos": (0, AMOUNT_NANOS_MAX),
}
# Input fields that may be absent (or null) and then read as this value.
ABSENT_AS: dict[str, int] = {"cache_read_tokens": 0, "cache_write_tokens": 0}
# A usage correction (this field set) is a restatement delta: in it the
# SIGNED_IN_CORRECTION fields may be negative, down to minus their maximum.
CORRECTION_FIELD = "corrects_event_id"
SIGNED_IN_CORRECTION = frozenset(
    {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_nanos"})
# A time field that must be later than another one of the same event.
LATER_THAN: dict[str, str] = {"expires_at": "effective_at"}


class EventError(ValueError):
    """An event that cannot be accepted; `field_name` says where."""

    def __init__(self, reason: str, field_name: str | None = None):
        self.reason = reason
        self.field_name = field_name
        super().__init__(f"{field_name}: {reason}" if field_name else reason)


def parse_time(value: Any, field_name: str) -> datetime:
    """RFC 3339 UTC string (or aware datetime) -> aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventError("timestamp has no time zone", field_name)
        return value.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise EventError(f"expected RFC 3339 string, got {type(value).__name__}", field_name)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EventError(f"not an RFC 3339 timestamp: {value!r}", field_name) from exc
    if parsed.tzinfo is None:
        raise EventError(f"timestamp has no time zone: {value!r}", field_name)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """Aware datetime -> `2026-03-01T12:00:00.000000Z`."""
    if type(value) is datetime and value.tzinfo is timezone.utc and value.year >= 1000:
        # The same text as strftime below (hot: every fingerprint and posting
        # hash); strftime does not zero-pad years before 1000. orjson writes
        # it ~3x faster than isoformat, but leaves out a zero fraction.
        if value.microsecond:
            return _dumps(value, option=_UTC_Z).decode()[1:-1]
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_dumps, _UTC_Z = orjson.dumps, orjson.OPT_UTC_Z


@overload
def _str(raw: dict[str, Any], name: str, length_max: int, optional: Literal[False] = False) -> str: ...
@overload
def _str(raw: dict[str, Any], name: str, length_max: int, optional: bool) -> str | None: ...
def _str(raw: dict[str, Any], name: str, length_max: int, optional: bool = False) -> str | None:
    value = raw.get(name)
    if value is None:
        if optional:
            return None
        raise EventError("missing", name)
    if not isinstance(value, str) or not value:
        raise EventError("expected a non-empty string", name)
    if len(value) > length_max:
        raise EventError(f"longer than {length_max} characters", name)
    return value


@overload
def _int(raw: dict[str, Any], name: str, minimum: int, maximum: int, optional: Literal[False] = False) -> int: ...
@overload
def _int(raw: dict[str, Any], name: str, minimum: int, maximum: int, optional: bool) -> int | None: ...
def _int(raw: dict[str, Any], name: str, minimum: int, maximum: int, optional: bool = False) -> int | None:
    value = raw.get(name)
    if value is None:
        if optional:
            return None
        raise EventError("missing", name)
    # bool is an int subclass; a JSON `true` is never an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventError(f"expected an integer, got {value!r}", name)
    if value < minimum:
        raise EventError(f"must be >= {minimum}, got {value}", name)
    if value > maximum:
        raise EventError(f"must be <= {maximum}, got {value}", name)
    return value


@dataclass(frozen=True, slots=True)
class GrantIssued:
    event_id: str
    engineer_id: str
    grant_id: str
    amount_nanos: int
    effective_at: datetime
    expires_at: datetime | None
    kind: str
    type: str = field(default="grant_issued", init=False)

    @property
    def event_time(self) -> datetime:
        return self.effective_at


@dataclass(frozen=True, slots=True)
class GrantRevoked:
    event_id: str
    engineer_id: str
    grant_id: str
    effective_at: datetime
    type: str = field(default="grant_revoked", init=False)

    @property
    def event_time(self) -> datetime:
        return self.effective_at


@dataclass(frozen=True, slots=True)
class EngineerOffboarded:
    event_id: str
    engineer_id: str
    effective_at: datetime
    type: str = field(default="engineer_offboarded", init=False)

    @property
    def event_time(self) -> datetime:
        return self.effective_at


@dataclass(frozen=True, slots=True)
class Usage:
    event_id: str
    engineer_id: str
    provider: str
    model: str
    occurred_at: datetime
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_nanos: int | None
    # Provenance, optional: why a cost is null, which price data priced it,
    # which earlier event a correction amends.
    unpriced_reason: str | None = None
    price_version: str | None = None
    corrects_event_id: str | None = None
    type: str = field(default="usage", init=False)

    @property
    def event_time(self) -> datetime:
        return self.occurred_at


@dataclass(frozen=True, slots=True)
class TeamAssigned:
    """HR: the engineer belongs to `team_id` from `effective_at` on."""

    event_id: str
    engineer_id: str
    team_id: str
    effective_at: datetime
    type: str = field(default="team_assigned", init=False)

    @property
    def event_time(self) -> datetime:
        return self.effective_at


@dataclass(frozen=True, slots=True)
class LeaderboardPrivacy:
    """HR: the engineer opts out of (or back into) public leaderboards."""

    event_id: str
    engineer_id: str
    opted_out: bool
    effective_at: datetime
    type: str = field(default="leaderboard_privacy", init=False)

    @property
    def event_time(self) -> datetime:
        return self.effective_at


@dataclass(frozen=True, slots=True)
class CashCompensation:
    """HR: annual cash pay from `effective_at`, for compute-as-share-of-pay reports."""

    event_id: str
    engineer_id: str
    annual_cash_nanos: int
    effective_at: datetime
    type: str = field(default="cash_compensation", init=False)

    @property
    def event_time(self) -> datetime:
        return self.effective_at


LedgerEvent = Union[GrantIssued, GrantRevoked, EngineerOffboarded, Usage]
HrEvent = Union[TeamAssigned, LeaderboardPrivacy, CashCompensation]
Event = Union[LedgerEvent, HrEvent]
LEDGER_EVENT_TYPES = ("grant_issued", "grant_revoked", "engineer_offboarded", "usage")
HR_EVENT_TYPES = ("team_assigned", "leaderboard_privacy", "cash_compensation")
EVENT_TYPES = LEDGER_EVENT_TYPES + HR_EVENT_TYPES
LEDGER_EVENT_CLASSES: tuple[type[LedgerEvent], ...] = (GrantIssued, GrantRevoked, EngineerOffboarded, Usage)
HR_EVENT_CLASSES: tuple[type[HrEvent], ...] = (TeamAssigned, LeaderboardPrivacy, CashCompensation)
EVENT_CLASSES: tuple[type[Event], ...] = LEDGER_EVENT_CLASSES + HR_EVENT_CLASSES


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One payload field of an event: its dataclass field joined with the
    vocabulary above."""

    name: str
    kind: type  # str, int, bool or datetime
    optional: bool  # null is a valid value (and absent reads as null)
    length_max: int | None = None  # str: 1..length_max characters
    minimum: int | None = None  # int: minimum..maximum
    maximum: int | None = None
    absent_as: int | None = None  # absent or null on input reads as this


def event_type_of(cls: type[Event]) -> str:
    """The `type` discriminator of an event class ("usage", ...)."""
    default = cls.__dataclass_fields__["type"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__}.type has no string default")
    return default


def _field_specs(cls: type[Event]) -> tuple[FieldSpec, ...]:
    hints = get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if f.name == "type":
            continue
        if f.name.startswith("_"):  # the generated parsers keep `_` names for their own
            raise TypeError(f"{cls.__name__}.{f.name}: an event field name cannot start with _")
        hint = hints[f.name]
        args = get_args(hint)
        optional = type(None) in args
        kinds = [a for a in args if a is not type(None)] if args else [hint]
        if len(kinds) != 1 or kinds[0] not in (str, int, bool, datetime):
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {hint!r}")
        kind = kinds[0]
        spec = FieldSpec(f.name, kind, optional, absent_as=ABSENT_AS.get(f.name))
        if kind is str:
            if f.name not in TEXT_LENGTH_MAX:
                raise TypeError(f"{cls.__name__}.{f.name}: add its limit to TEXT_LENGTH_MAX")
            spec = dataclasses.replace(spec, length_max=TEXT_LENGTH_MAX[f.name])
        elif kind is int:
            if f.name not in INT_RANGE:
                raise TypeError(f"{cls.__name__}.{f.name}: add its range to INT_RANGE")
            minimum, maximum = INT_RANGE[f.name]
            spec = dataclasses.replace(spec, minimum=minimum, maximum=maximum)
        specs.append(spec)
    return tuple(specs)


# Every event's payload fields in dataclass order (what each shape is built
# from); computed at import, so a field without a limit fails every import.
EVENT_FIELDS: dict[type[Event], tuple[FieldSpec, ...]] = {cls: _field_specs(cls) for cls in EVENT_CLASSES}


def event_from_dict(raw: Any) -> Event:
    """Validate a canonical JSON object and build the event. Raises EventError."""
    if not isinstance(raw, dict):
        raise EventError(f"expected a JSON object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        raise EventError(f"unknown event type {kind!r}", "type")
    event_id = _str(raw, "event_id", EVENT_ID_LENGTH_MAX)
    engineer_id = _str(raw, "engineer_id", ENGINEER_ID_LENGTH_MAX)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in engineer_id):
        # Ids are keys everywhere (Kafka, tables, files); control characters
        # are never a real id, and the worker reserves them for its own keys.
        raise EventError("contains control characters", "engineer_id")
    if kind == "grant_issued":
        effective_at = parse_time(raw.get("effective_at"), "effective_at")
        expires_raw = raw.get("expires_at")
        expires_at = None if expires_raw is None else parse_time(expires_raw, "expires_at")
        if expires_at is not None and expires_at <= effective_at:
            raise EventError("must be later than effective_at", "expires_at")
        return GrantIssued(
            event_id=event_id,
            engineer_id=engineer_id,
            grant_id=_str(raw, "grant_id", GRANT_ID_LENGTH_MAX),
            amount_nanos=_int(raw, "amount_nanos", 1, AMOUNT_NANOS_MAX),
            effective_at=effective_at,
            expires_at=expires_at,
            kind=_str(raw, "kind", GRANT_KIND_LENGTH_MAX),
        )
    if kind in HR_EVENT_TYPES:
        return _hr_event_from_dict(kind, raw, event_id, engineer_id)
    if kind == "grant_revoked":
        return GrantRevoked(
            event_id=event_id,
            engineer_id=engineer_id,
            grant_id=_str(raw, "grant_id", GRANT_ID_LENGTH_MAX),
            effective_at=parse_time(raw.get("effective_at"), "effective_at"),
        )
    if kind == "engineer_offboarded":
        return EngineerOffboarded(
            event_id=event_id,
            engineer_id=engineer_id,
            effective_at=parse_time(raw.get("effective_at"), "effective_at"),
        )
    corrects_event_id = _str(raw, "corrects_event_id", EVENT_ID_LENGTH_MAX, optional=True)
    # A correction is a restatement delta: only there may tokens and cost be negative.
    tokens_min = -TOKENS_MAX if corrects_event_id is not None else 0
    cost_min = -AMOUNT_NANOS_MAX if corrects_event_id is not None else 0
    return Usage(
        event_id=event_id,
        engineer_id=engineer_id,
        provider=_str(raw, "provider", PROVIDER_LENGTH_MAX),
        model=_str(raw, "model", MODEL_LENGTH_MAX),
        occurred_at=parse_time(raw.get("occurred_at"), "occurred_at"),
        input_tokens=_int(raw, "input_tokens", tokens_min, TOKENS_MAX),
        output_tokens=_int(raw, "output_tokens", tokens_min, TOKENS_MAX),
        cache_read_tokens=_int(raw, "cache_read_tokens", tokens_min, TOKENS_MAX, optional=True) or 0,
        cache_write_tokens=_int(raw, "cache_write_tokens", tokens_min, TOKENS_MAX, optional=True) or 0,
        cost_nanos=_int(raw, "cost_nanos", cost_min, AMOUNT_NANOS_MAX, optional=True),
        unpriced_reason=_str(raw, "unpriced_reason", UNPRICED_REASON_LENGTH_MAX, optional=True),
        price_version=_str(raw, "price_version", PRICE_VERSION_LENGTH_MAX, optional=True),
        corrects_event_id=corrects_event_id,
    )


def _hr_event_from_dict(kind: str, raw: dict[str, Any], event_id: str, engineer_id: str) -> HrEvent:
    effective_at = parse_time(raw.get("effective_at"), "effective_at")
    if kind == "team_assigned":
        return TeamAssigned(event_id, engineer_id, _str(raw, "team_id", TEAM_ID_LENGTH_MAX), effective_at)
    if kind == "leaderboard_privacy":
        opted_out = raw.get("opted_out")
        if not isinstance(opted_out, bool):
            raise EventError("expected true or false", "opted_out")
        return LeaderboardPrivacy(event_id, engineer_id, opted_out, effective_at)
    return CashCompensation(
        event_id, engineer_id, _int(raw, "annual_cash_nanos", 0, AMOUNT_NANOS_MAX), effective_at
    )


def event_to_dict(event: Event) -> dict[str, Any]:
    """Event -> canonical JSON object (timestamps as RFC 3339 strings)."""
    out: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        if f.name == "type":
            continue
        value = getattr(event, f.name)
        out[f.name] = format_time(value) if isinstance(value, datetime) else value
    return out


def event_to_json(event: Event) -> str:
    return json.dumps(event_to_dict(event), sort_keys=True, separators=(",", ":"))


def payload_fingerprint(event: Event) -> str:
    """Stable text of the payload; equal ids with unequal fingerprints conflict."""
    return event_to_json(event)


# --- Ordering (ledger contract rule 2), shared by replay, streaming and audit. ---

# At one instant: grant issued, then expiries, then revocations and offboardings,
# then usage; remaining ties by event_id (expiries by `expiry:<grant_id>`).
RANK_GRANT_ISSUED = 0
RANK_EXPIRY = 1
RANK_REVOCATION = 2
RANK_USAGE = 3
_RANKS = {
    GrantIssued: RANK_GRANT_ISSUED,
    GrantRevoked: RANK_REVOCATION,
    EngineerOffboarded: RANK_REVOCATION,
    Usage: RANK_USAGE,
}


def event_rank(event: Event) -> int:
    """Tie rank at equal event time (rule 2)."""
    return _RANKS[type(event)]


def event_sort_key(event: Event | LateAt) -> tuple[datetime, int, str]:
    """Total order of the ledger: (event time, rank, event_id)."""
    if isinstance(event, Usage):
        return (event.occurred_at, RANK_USAGE, event.event_id)
    if isinstance(event, LateAt):
        return event.sort_key()
    return (event.effective_at, _RANKS[type(event)], event.event_id)


# A LateAt waits at its watermark ahead of every event of that instant: the
# stream applied it when everything before the watermark was final, nothing after.
RANK_LATE_AT = -1


@dataclass(frozen=True, slots=True)
class LateAt:
    """A late decision of the stream, replayed: `event` arrived when its book
    was final through `watermark` and was applied on top of that state
    (domain/book.py). A book replaying the stream's decisions (a rebuild,
    ops/rebuild.py) keeps it among its pending events at `watermark`, so it
    is applied, late, once everything before `watermark` is final, whatever
    order the rebuild reads the events in. `order`: the stream's order among
    the book's late events (equal watermarks are applied in it)."""

    event: LedgerEvent
    watermark: datetime
    order: int

    type = "late_at"

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def event_time(self) -> datetime:
        """Its place in the book's order: the watermark, not the event's time."""
        return self.watermark

    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.watermark, RANK_LATE_AT, f"{self.order:012d}")


def expiry_cause_id(grant_id: str) -> str:
    """Synthetic cause id of a grant's expiry posting."""
    return "expiry:" + grant_id


def is_correction(event: Event) -> bool:
    return type(event) is Usage and event.corrects_event_id is not None
