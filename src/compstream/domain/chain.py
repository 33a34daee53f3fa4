"""Per-engineer SHA-256 hash chain over postings.

    hash = sha256_hex( prev_hash + canonical_posting(fields) )   (UTF-8 bytes)

`canonical_posting` is compact JSON with sorted keys over exactly these fields:
amount_nanos, available_after_nanos, cause_event_id, engineer_id, event_time
(RFC 3339, microseconds, `Z`), grant_id (null for lot-less postings), kind, seq.
The first posting of an engineer has seq 1 and prev_hash `GENESIS_HASH`.

This module is deliberately free of ledger types so the audit code can verify
chains straight from stored rows.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import orjson

from compstream.domain.events import format_time

GENESIS_HASH = "0" * 64
CHAIN_FIELDS = (
    "amount_nanos",
    "available_after_nanos",
    "cause_event_id",
    "engineer_id",
    "event_time",
    "grant_id",
    "kind",
    "seq",
)


def canonical_posting(
    *,
    engineer_id: str,
    seq: int,
    kind: str,
    grant_id: str | None,
    amount_nanos: int,
    cause_event_id: str,
    event_time: datetime | str,
    available_after_nanos: int,
) -> str:
    """The exact text that is hashed for one posting: identical to
    json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True),
    built by hand because this is the streaming hot path."""
    if isinstance(event_time, datetime):
        event_time = format_time(event_time)
    # Exact ints (the ledger's case, once per posting) pass in one test.
    if not (type(seq) is int and type(amount_nanos) is int and type(available_after_nanos) is int):
        for name, value in (("seq", seq), ("amount_nanos", amount_nanos),
                            ("available_after_nanos", available_after_nanos)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
    return _TEMPLATE % (
        amount_nanos, available_after_nanos, _enc(cause_event_id), _enc(engineer_id),
        _enc(event_time), "null" if grant_id is None else _enc(grant_id), _enc(kind), seq,
    )


_enc = json.encoder.encode_basestring_ascii  # JSON string literal, ASCII-escaped
_TEMPLATE = (
    '{"amount_nanos":%d,"available_after_nanos":%d,"cause_event_id":%s,"engineer_id":%s,'
    '"event_time":%s,"grant_id":%s,"kind":%s,"seq":%d}'
)


def ledger_posting_hash(prev_hash: str, engineer_id: str, seq: int, kind: str, grant_id: str | None,
                        amount_nanos: int, cause_event_id: str, event_time: datetime,
                        available_after_nanos: int) -> str:
    """`chain_hash(prev_hash, canonical_posting(...))`, positional, for the
    ledger's own postings (once per posting): a time's RFC 3339 text needs
    no JSON escaping. Anything but exact ints and an exact datetime takes
    canonical_posting (its checks and errors)."""
    if (type(seq) is int and type(amount_nanos) is int and type(available_after_nanos) is int
            and type(event_time) is datetime):
        if event_time.tzinfo is _UTC and event_time.microsecond and event_time.year >= 1000:
            when = _dumps(event_time, option=_UTC_Z).decode()  # format_time's text, quoted (its fast case)
        else:
            when = '"' + format_time(event_time) + '"'
        # The previous hash written into the same template: one string, one encode.
        data = (_CHAINED % (prev_hash, amount_nanos, available_after_nanos, _enc(cause_event_id),
                            _enc(engineer_id), when, "null" if grant_id is None else _enc(grant_id), _enc(kind),
                            seq)).encode("utf-8")
    else:
        data = (prev_hash + canonical_posting(
            engineer_id=engineer_id, seq=seq, kind=kind, grant_id=grant_id, amount_nanos=amount_nanos,
            cause_event_id=cause_event_id, event_time=event_time,
            available_after_nanos=available_after_nanos)).encode("utf-8")
    return _sha256(data).hexdigest()


_sha256 = hashlib.sha256
_CHAINED = "%s" + _TEMPLATE
_dumps, _UTC_Z, _UTC = orjson.dumps, orjson.OPT_UTC_Z, timezone.utc


def canonical_posting_reference(**fields: Any) -> str:
    """Slow reference of canonical_posting (tests and external verifiers)."""
    if isinstance(fields.get("event_time"), datetime):
        fields["event_time"] = format_time(fields["event_time"])
    return json.dumps({k: fields[k] for k in CHAIN_FIELDS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def posting_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """Hash of a posting given as a mapping holding at least CHAIN_FIELDS."""
    return chain_hash(prev_hash, canonical_posting(**{k: fields[k] for k in CHAIN_FIELDS}))


class ChainError(ValueError):
    """A chain that does not verify; `seq` is the first bad posting."""

    def __init__(self, engineer_id: str, seq: int | None, reason: str):
        self.engineer_id = engineer_id
        self.seq = seq
        self.reason = reason
        super().__init__(f"engineer {engineer_id!r} seq {seq}: {reason}")


def verify_chain(
    postings: Iterable[Mapping[str, Any] | Any],
    *,
    start_seq: int = 1,
    start_hash: str = GENESIS_HASH,
) -> tuple[int, str]:
    """Verify one engineer's postings in seq order (mappings or objects with the
    same attribute names plus prev_hash and hash). Returns (last seq, last hash)
    so verification can resume; raises ChainError at the first break."""
    expected_seq, prev = start_seq, start_hash
    engineer: str | None = None
    for item in postings:
        row = item if isinstance(item, Mapping) else {
            k: getattr(item, k) for k in (*CHAIN_FIELDS, "prev_hash", "hash")
        }
        eng = row["engineer_id"]
        if engineer is None:
            engineer = eng
        elif eng != engineer:
            raise ChainError(eng, row["seq"], f"mixed engineers in one chain ({engineer!r})")
        if row["seq"] != expected_seq:
            raise ChainError(eng, row["seq"], f"expected seq {expected_seq}")
        if row["prev_hash"] != prev:
            raise ChainError(eng, row["seq"], "prev_hash does not match the previous hash")
        if isinstance(row["amount_nanos"], bool) or row["amount_nanos"] <= 0:
            raise ChainError(eng, row["seq"], "amount_nanos must be > 0")
        digest = posting_hash(prev, row)
        if row["hash"] != digest:
            raise ChainError(eng, row["seq"], "hash does not match the posting's fields")
        prev = digest
        expected_seq += 1
    return expected_seq - 1, prev
