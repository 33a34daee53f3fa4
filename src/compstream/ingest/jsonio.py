"""Reading inputs: files or stdin, bounded in size, JSON parsed with exact decimals."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from compstream.ingest.model import IngestError, Location, RowError

# A provider export larger than this is split before ingesting; the adapters
# hold one document in memory at a time.
INPUT_BYTES_MAX = 512 * 1024 * 1024
LINE_BYTES_MAX = 64 * 1024 * 1024


def display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def read_text(path: str) -> str:
    """Whole input as text; `-` is stdin. Raises IngestError when unreadable or too large."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(INPUT_BYTES_MAX + 1)
        else:
            p = Path(path)
            size = p.stat().st_size
            if size > INPUT_BYTES_MAX:
                raise IngestError(
                    f"{path}: {size} bytes exceeds the {INPUT_BYTES_MAX}-byte input limit; split the export")
            data = p.read_bytes()
    except OSError as exc:
        raise IngestError(f"{display_name(path)}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > INPUT_BYTES_MAX:
        raise IngestError(f"{display_name(path)}: input exceeds the {INPUT_BYTES_MAX}-byte limit; split the export")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{display_name(path)}: not UTF-8 text (byte {exc.start})") from exc


def loads(text: str) -> Any:
    """JSON with floats as Decimal (money stays exact) and no NaN/Infinity."""

    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number")

    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def json_documents(text: str, name: str) -> Iterator[tuple[Any, Location] | tuple[None, Location, str]]:
    """One JSON document per yielded item.

    Accepts a single JSON value (object or array of pages) or JSON Lines (one
    value per line). A malformed document yields `(None, location, reason)`;
    with JSON Lines the other lines still count.
    """
    stripped = text.strip()
    if not stripped:
        yield None, Location(name, 1), "empty input"
        return
    try:
        doc = loads(stripped)
    except (json.JSONDecodeError, ValueError) as whole_error:
        # Not one document: try JSON Lines.
        lines = text.splitlines()
        first = next((line for line in lines if line.strip()), "")
        if len(lines) <= 1 or not _parses(first):
            # One (broken) document, not JSON Lines: report where it broke.
            yield None, Location(name, getattr(whole_error, "lineno", 1)), f"malformed JSON: {_msg(whole_error)}"
            return
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if len(line) > LINE_BYTES_MAX:
                yield None, Location(name, number), "line too long"
                continue
            try:
                yield loads(line), Location(name, number)
            except (json.JSONDecodeError, ValueError) as exc:
                yield None, Location(name, number), f"malformed JSON: {_msg(exc)}"
        return
    if isinstance(doc, list):
        for index, item in enumerate(doc):
            yield item, Location(name, None, f"[{index}]")
    else:
        yield doc, Location(name, 1 if "\n" not in stripped else None)


def _parses(line: str) -> bool:
    try:
        loads(line)
    except (json.JSONDecodeError, ValueError):
        return False
    return True


def _msg(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


# --- small field readers shared by the adapters -----------------------------

def field(obj: Any, name: str, where: str = "") -> Any:
    if not isinstance(obj, dict):
        raise RowError(f"{where or 'row'} is not a JSON object")
    if name not in obj:
        raise RowError(f"missing field {name!r}")
    return obj[name]


def opt_str(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RowError(f"field {name!r} must be a string or null, got {value!r}")
    return value


def req_str(obj: dict, name: str) -> str:
    value = field(obj, name)
    if not isinstance(value, str) or not value:
        raise RowError(f"field {name!r} must be a non-empty string, got {value!r}")
    return value


def tokens(obj: dict, name: str, required: bool = False) -> int:
    """A token count: a non-negative integer (JSON `12.0` and strings are refused)."""
    if name not in obj or obj[name] is None:
        if required:
            raise RowError(f"missing field {name!r}")
        return 0
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(f"field {name!r} must be an integer, got {value!r}")
    if value < 0:
        raise RowError(f"field {name!r} is negative ({value})")
    return value


def decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise RowError(f"field {name!r} must be a number, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RowError(f"field {name!r} is not finite")
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except Exception as exc:  # decimal.InvalidOperation
            raise RowError(f"field {name!r} is not a number: {value!r}") from exc
        if not parsed.is_finite():
            raise RowError(f"field {name!r} is not finite")
        return parsed
    raise RowError(f"field {name!r} must be a number, got {value!r}")
