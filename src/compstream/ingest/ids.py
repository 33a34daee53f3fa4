"""Deterministic event ids.

An original usage event's id is `<source>:` + the first 32 hex digits (128
bits) of sha256 over the canonical JSON of the row's identity tuple, so the
same source row always yields the same id and re-ingesting is a no-op
downstream (the ledger ignores ids it has seen).

A correction for a restated row is `<original id>:r<revision>-<12 hex>` where
the hex is sha256 over (identity, revision, previous numbers, new numbers).
The revision counter comes from the ingest journal (how many events exist for
the identity), so the id is the same whenever the same history is replayed,
and an A -> B -> A -> B flip-flop still gets distinct ids per step.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from compstream.domain.events import format_time

IDENTITY_SCHEMA = "v1"
DIGEST_HEX = 32


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Decimal):
        return str(value.normalize()) if value else "0"
    raise TypeError(f"not serialisable in an identity: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False)


def identity_key(identity: tuple[tuple[str, object], ...]) -> str:
    """The journal key: canonical JSON of the identity (schema-tagged)."""
    return canonical_json([IDENTITY_SCHEMA, [list(pair) for pair in identity]])


def digest(text: str, length: int = DIGEST_HEX) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def event_id(source: str, identity: tuple[tuple[str, object], ...]) -> str:
    return f"{source}:{digest(identity_key(identity))}"


def correction_id(original_id: str, identity_key_text: str, revision: int, before: str, after: str) -> str:
    fingerprint = digest(canonical_json([identity_key_text, revision, before, after]), 12)
    return f"{original_id}:r{revision}-{fingerprint}"


def fingerprint(numbers: dict) -> str:
    """Stable text of a row's source numbers; equal text means nothing was restated."""
    return canonical_json(numbers)
