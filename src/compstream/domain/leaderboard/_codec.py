"""Small strict readers for `from_dict`: state and messages come off Kafka, so a
malformed field must raise LeaderboardError naming it, not half-load."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compstream.domain.events import EventError, format_time, parse_time
from compstream.domain.leaderboard.errors import LeaderboardError


def obj(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise LeaderboardError(f"{what}: expected an object, got {type(raw).__name__}")
    return raw


def req_int(raw: dict[str, Any], name: str, minimum: int = 0) -> int:
    value = raw.get(name)
    # bool is an int subclass; `true` is never a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LeaderboardError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise LeaderboardError(f"{name}: must be >= {minimum}, got {value}")
    return value


def req_str(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise LeaderboardError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def req_bool(raw: dict[str, Any], name: str) -> bool:
    value = raw.get(name)
    if not isinstance(value, bool):
        raise LeaderboardError(f"{name}: expected true or false, got {value!r}")
    return value


def req_list(raw: dict[str, Any], name: str) -> list[Any]:
    value = raw.get(name)
    if not isinstance(value, list):
        raise LeaderboardError(f"{name}: expected a list, got {value!r}")
    return value


def opt_time(raw: dict[str, Any], name: str) -> datetime | None:
    value = raw.get(name)
    if value is None:
        return None
    return req_time(raw, name)


def req_time(raw: dict[str, Any], name: str) -> datetime:
    try:
        return parse_time(raw.get(name), name)
    except EventError as exc:
        raise LeaderboardError(str(exc)) from exc


def time_out(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)
