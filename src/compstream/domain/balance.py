"""Value objects the ledger hands out: Balance, Posting, Report."""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compstream.domain.events import format_time

# Posting kinds. issue/consume/expire/revoke/forfeit/overdraft are the contract;
# the three refund kinds come from negative correction deltas (see ledger.py).
ISSUE = "issue"
CONSUME = "consume"
EXPIRE = "expire"
REVOKE = "revoke"
FORFEIT = "forfeit"
OVERDRAFT = "overdraft"
OVERDRAFT_REFUND = "overdraft_refund"
REFUND = "refund"
REFUND_UNAPPLIED = "refund_unapplied"
POSTING_KINDS = (
    ISSUE, CONSUME, EXPIRE, REVOKE, FORFEIT, OVERDRAFT, OVERDRAFT_REFUND, REFUND, REFUND_UNAPPLIED,
)


@dataclass(frozen=True, slots=True)
class Balance:
    """One engineer's balance (ledger contract rule 7). Integers only.

    Conservation: issued = consumed + expired + revoked + forfeited + remaining.
    """

    issued_nanos: int = 0
    consumed_nanos: int = 0
    overdraft_nanos: int = 0
    expired_nanos: int = 0
    revoked_nanos: int = 0
    forfeited_nanos: int = 0
    remaining_nanos: int = 0
    available_nanos: int = 0
    usage_cost_nanos: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    unpriced_events: int = 0
    refund_unapplied_nanos: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(zip(BALANCE_FIELDS, _values(self), strict=True))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Balance":
        return cls(**{f.name: int(raw.get(f.name, 0)) for f in dataclasses.fields(cls)})

    def conserved(self) -> bool:
        return self.issued_nanos == (
            self.consumed_nanos + self.expired_nanos + self.revoked_nanos
            + self.forfeited_nanos + self.remaining_nanos
        )


BALANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Balance))
_values = operator.attrgetter(*BALANCE_FIELDS)


@dataclass(frozen=True, slots=True)
class Posting:
    """One immutable line of an engineer's hash-chained history."""

    engineer_id: str
    seq: int
    kind: str
    grant_id: str | None
    amount_nanos: int
    cause_event_id: str
    event_time: datetime
    available_after_nanos: int
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["event_time"] = format_time(self.event_time)
        return out


@dataclass(frozen=True, slots=True)
class Report:
    """Something the ledger refused or ignored; never silent.

    codes: conflict (same event_id, different payload: dead letter),
    revoke_unknown_grant, revoke_closed_grant, grant_id_reused,
    late (applied after its time was already final).
    `position` is the input index of the event where the caller knows it."""

    engineer_id: str
    event_id: str
    code: str
    detail: str = ""
    position: int | None = None
    first_position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
