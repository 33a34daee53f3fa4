"""The fold: one engineer's ledger, applied to events in ledger order.

Pure and integer-only. The caller feeds events already deduplicated and sorted
by `events.event_sort_key`; the ledger interleaves each grant's expiry (a
synthetic event at expires_at, cause id `expiry:<grant_id>`) itself:

* expiry sorts after a grant issued at the same instant and before revocations,
  offboardings and usage at that instant (contract rule 2);
* usage draws from open grants soonest-expiring first, never-expiring last, ties
  by effective_at then grant_id; the uncovered rest is overdraft (rule 3);
* expiry / revocation / offboarding close grants with their remaining amount
  expired / revoked / forfeited (rule 4).

Negative correction deltas (usage with `corrects_event_id` and cost < 0), the
refund rule. The refund R = -cost is applied in this order:
  1. it reduces overdraft first               (posting `overdraft_refund`);
  2. the rest returns to *open* grants in reverse draw order, each at most what
     that grant has consumed so far (consumed -= x, remaining += x; `refund`);
  3. what is left is booked as `refund_unapplied` (posting and counter).
Conservation issued = consumed + expired + revoked + forfeited + remaining stays
exact; value never reappears on a closed grant. A positive correction delta is
drawn like ordinary usage; token deltas are added as they come (may be < 0).
"""

from __future__ import annotations

from bisect import insort
from datetime import datetime
from heapq import heappop, heappush
from typing import Any

from compstream.domain import alerts as _alerts
from compstream.domain.balance import (
    BALANCE_FIELDS,
    CONSUME,
    EXPIRE,
    FORFEIT,
    ISSUE,
    OVERDRAFT,
    OVERDRAFT_REFUND,
    REFUND,
    REFUND_UNAPPLIED,
    REVOKE,
    Balance,
    Posting,
    Report,
)
from compstream.domain.chain import GENESIS_HASH, ledger_posting_hash
from compstream.domain.events import (
    EngineerOffboarded,
    Event,
    EventError,
    GrantIssued,
    GrantRevoked,
    LateAt,
    Usage,
    expiry_cause_id,
)
from compstream.domain.twin import fast_constructor

# Positional constructors without the frozen __init__'s object.__setattr__
# per field (~1 µs a posting or balance; domain/twin.py).
_new_posting = fast_constructor(Posting)
_new_balance = fast_constructor(Balance)

# The order Ledger.balance passes Balance's fields in.
_BALANCE_ORDER = (
    "issued_nanos", "consumed_nanos", "overdraft_nanos", "expired_nanos", "revoked_nanos", "forfeited_nanos",
    "remaining_nanos", "available_nanos", "usage_cost_nanos", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "unpriced_events", "refund_unapplied_nanos",
)
if BALANCE_FIELDS != _BALANCE_ORDER:
    raise ImportError(f"Balance fields {BALANCE_FIELDS} are not in the order Ledger.balance passes them")


# Every counter of a balance is an Avro long on the balance topic and an
# Int64 in ClickHouse: an event that would take one past this is ignored
# with a report (OVERFLOW), as a reused grant id is, instead of failing the
# batch it is in at every retry.
COUNTER_MAX = 2**63 - 1
OVERFLOW = "overflow"


class LedgerError(ValueError):
    """An event the ledger must not apply (programming or validation error)."""


def check_event(e: Event) -> None:
    """Money and token invariants the fold relies on (event_from_dict already
    enforces them; this guards hand-built events). Raises EventError."""
    tp = type(e)
    if isinstance(e, GrantIssued):
        amount = e.amount_nanos
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise EventError(f"must be a positive integer, got {amount!r}", "amount_nanos")
        if e.expires_at is not None and e.expires_at <= e.effective_at:
            raise EventError("must be later than effective_at", "expires_at")
    elif isinstance(e, Usage):
        if e.corrects_event_id is None:
            for name in ("input_tokens", "output_tokens", "cache_read_tokens",
                         "cache_write_tokens", "cost_nanos"):
                value = getattr(e, name)
                if value is not None and value < 0:
                    raise EventError("negative only on a correction", name)
    elif tp not in (GrantRevoked, EngineerOffboarded):
        raise EventError(f"not an event: {tp.__name__}")


class Lot:
    """An open grant."""

    __slots__ = ("grant_id", "amount", "remaining", "consumed", "effective_at", "expires_at", "key")

    def __init__(self, grant_id: str, amount: int, remaining: int, consumed: int,
                 effective_at: datetime, expires_at: datetime | None):
        self.grant_id = grant_id
        self.amount = amount
        self.remaining = remaining
        self.consumed = consumed
        self.effective_at = effective_at
        self.expires_at = expires_at
        # Draw order: expiring grants first (soonest first), then never-expiring.
        self.key = (expires_at is None, expires_at or effective_at, effective_at, grant_id)

    def copy(self) -> "Lot":
        return Lot(self.grant_id, self.amount, self.remaining, self.consumed,
                   self.effective_at, self.expires_at)


def _lot_key(lot: Lot) -> tuple[Any, ...]:
    return lot.key


class Ledger:
    """Mutable per-engineer fold state. With record=True it emits hash-chained
    postings, alerts and reports into `postings`, `alerts`, `reports` (the
    caller drains them); with record=False it only keeps balances (fast)."""

    __slots__ = (
        "engineer_id", "record", "thresholds", "lots", "open", "closed", "expiries",
        "issued", "consumed", "overdraft", "expired", "revoked", "forfeited", "refund_unapplied",
        "remaining", "open_amount", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_write_tokens", "unpriced", "fired", "od_flag", "seq", "head",
        "postings", "alerts", "reports",
    )

    def __init__(self, engineer_id: str, *, record: bool = True,
                 thresholds: tuple[int, ...] = _alerts.DEFAULT_THRESHOLDS):
        self.engineer_id = engineer_id
        self.record = record
        self.thresholds = thresholds
        self.lots: list[Lot] = []  # open grants in draw order
        self.open: dict[str, Lot] = {}
        self.closed: set[str] = set()
        self.expiries: list[tuple[datetime, str]] = []  # heap of (expires_at, grant_id)
        self.issued = self.consumed = self.overdraft = 0
        self.expired = self.revoked = self.forfeited = self.refund_unapplied = 0
        self.remaining = self.open_amount = 0
        self.input_tokens = self.output_tokens = 0
        self.cache_read_tokens = self.cache_write_tokens = 0
        self.unpriced = 0
        self.fired = 0
        self.od_flag = False
        self.seq = 0
        self.head = GENESIS_HASH
        self.postings: list[Posting] = []
        self.alerts: list[_alerts.Alert] = []
        self.reports: list[Report] = []

    # ------------------------------------------------------------------ apply
    def apply(self, e: Event | LateAt) -> None:
        """Apply one event (after any expiries that sort before it)."""
        tp = type(e)
        exp = self.expiries
        if isinstance(e, Usage):
            t = e.occurred_at
            if exp and exp[0][0] <= t:
                self._expire(t, True)
            self._usage(e, t)
        elif isinstance(e, GrantIssued):
            t = e.effective_at
            if exp and exp[0][0] < t:
                self._expire(t, False)
            self._issue(e, t)
        elif isinstance(e, GrantRevoked):
            t = e.effective_at
            if exp and exp[0][0] <= t:
                self._expire(t, True)
            self._close_one(e, t)
        elif isinstance(e, EngineerOffboarded):
            t = e.effective_at
            if exp and exp[0][0] <= t:
                self._expire(t, True)
            for lot in list(self.lots):
                self._close(lot, FORFEIT, e.event_id, t)
        elif isinstance(e, LateAt):
            # Waited among the pending events: the expiries up to its watermark
            # first, as the stream had them final when the event arrived.
            self.expire_through(e.watermark, inclusive=False)
            self.apply_late(e.event, e.watermark)
            return
        else:
            raise LedgerError(f"not an event: {tp.__name__}")
        if self.record:
            self._check_alerts(e.event_id, t)

    def apply_late(self, e: Event, watermark: datetime) -> None:
        """An event that arrived when this ledger was final through
        `watermark` (expiries included): applied on top of that state, and
        reported."""
        self.reports.append(Report(self.engineer_id, e.event_id, "late",
                                   "event time before the finalized watermark; applied"
                                   " on top of the final state"))
        self.apply(e)
        self.expire_through(watermark, inclusive=False)

    def expire_through(self, until: datetime | None, inclusive: bool = True) -> None:
        """Run expiries up to `until` (all of them when None)."""
        if until is None:
            exp = self.expiries
            while exp:
                at, gid = heappop(exp)
                self._expire_one(at, gid)
        elif self.expiries:
            self._expire(until, inclusive)

    def _expire(self, until: datetime, inclusive: bool) -> None:
        exp = self.expiries
        while exp and (exp[0][0] < until or (inclusive and exp[0][0] == until)):
            at, gid = heappop(exp)
            self._expire_one(at, gid)

    def _expire_one(self, at: datetime, gid: str) -> None:
        lot = self.open.get(gid)
        if lot is None or lot.expires_at != at:
            return  # closed earlier (revoked/forfeited): nothing to expire
        cause = expiry_cause_id(gid)
        self._close(lot, EXPIRE, cause, at)
        if self.record:
            self._check_alerts(cause, at)

    # --------------------------------------------------------------- handlers
    def _issue(self, e: GrantIssued, t: datetime) -> None:
        gid = e.grant_id
        if gid in self.open or gid in self.closed:
            self.reports.append(Report(self.engineer_id, e.event_id, "grant_id_reused",
                                       f"grant {gid!r} was issued before; ignored"))
            return
        amount = e.amount_nanos
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise EventError(f"must be a positive integer, got {amount!r}", "amount_nanos")
        if e.expires_at is not None and e.expires_at <= t:
            raise EventError("must be later than effective_at", "expires_at")
        if self.issued + amount > COUNTER_MAX or self.remaining + amount > COUNTER_MAX:
            self.reports.append(Report(self.engineer_id, e.event_id, OVERFLOW,
                                       f"grant of {amount} nanos would take the engineer's issued total past "
                                       f"{COUNTER_MAX}, the most a balance counter holds; ignored"))
            return
        lot = Lot(gid, amount, amount, 0, t, e.expires_at)
        self.open[gid] = lot
        insort(self.lots, lot, key=_lot_key)
        if e.expires_at is not None:
            heappush(self.expiries, (e.expires_at, gid))
        self.issued += amount
        self.remaining += amount
        self.open_amount += amount
        if self.record:
            self._post(ISSUE, gid, amount, e.event_id, t)

    def _close_one(self, e: GrantRevoked, t: datetime) -> None:
        lot = self.open.get(e.grant_id)
        if lot is None:
            code = "revoke_closed_grant" if e.grant_id in self.closed else "revoke_unknown_grant"
            self.reports.append(Report(self.engineer_id, e.event_id, code,
                                       f"grant {e.grant_id!r} is not open; nothing revoked"))
            return
        self._close(lot, REVOKE, e.event_id, t)

    def _close(self, lot: Lot, kind: str, cause: str, t: datetime) -> None:
        amount = lot.remaining
        del self.open[lot.grant_id]
        self.lots.remove(lot)
        self.closed.add(lot.grant_id)
        self.remaining -= amount
        self.open_amount -= lot.amount
        if kind == EXPIRE:
            self.expired += amount
        elif kind == REVOKE:
            self.revoked += amount
        else:
            self.forfeited += amount
        lot.remaining = 0
        if amount and self.record:
            self._post(kind, lot.grant_id, amount, cause, t)

    def _usage(self, e: Usage, t: datetime) -> None:
        top = COUNTER_MAX
        it, ot = self.input_tokens + e.input_tokens, self.output_tokens + e.output_tokens
        rt, wt = self.cache_read_tokens + e.cache_read_tokens, self.cache_write_tokens + e.cache_write_tokens
        cost = e.cost_nanos
        if not (-top <= it <= top and -top <= ot <= top and -top <= rt <= top and -top <= wt <= top) or (
                cost is not None and (self.consumed + self.overdraft + cost > top if cost > 0
                                      else self.remaining - cost > top or self.refund_unapplied - cost > top)):
            self.reports.append(Report(self.engineer_id, e.event_id, OVERFLOW,
                                       f"usage of {cost} nanos and its tokens would take a total of the engineer "
                                       f"past {top}, the most a balance counter holds; ignored"))
            return
        self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens = it, ot, rt, wt
        if cost is None:
            self.unpriced += 1
        elif cost > 0:
            self._draw(cost, e.event_id, t)
        elif cost < 0:
            if e.corrects_event_id is None:
                raise EventError("negative cost is only allowed on a correction", "cost_nanos")
            self._refund(-cost, e.event_id, t)

    def _draw(self, cost: int, cause: str, t: datetime) -> None:
        record = self.record
        for lot in self.lots:
            r = lot.remaining
            if r:
                take = r if r < cost else cost
                lot.remaining = r - take
                lot.consumed += take
                self.remaining -= take
                self.consumed += take
                if record:
                    self._post(CONSUME, lot.grant_id, take, cause, t)
                cost -= take
                if not cost:
                    return
        self.overdraft += cost
        if record:
            self._post(OVERDRAFT, None, cost, cause, t)

    def _refund(self, amount: int, cause: str, t: datetime) -> None:
        record = self.record
        back = min(amount, self.overdraft)
        if back:
            self.overdraft -= back
            amount -= back
            if record:
                self._post(OVERDRAFT_REFUND, None, back, cause, t)
        for lot in reversed(self.lots):
            if not amount:
                return
            give = min(amount, lot.consumed)
            if give:
                lot.consumed -= give
                lot.remaining += give
                self.consumed -= give
                self.remaining += give
                amount -= give
                if record:
                    self._post(REFUND, lot.grant_id, give, cause, t)
        if amount:
            self.refund_unapplied += amount
            if record:
                self._post(REFUND_UNAPPLIED, None, amount, cause, t)

    # --------------------------------------------------------------- outputs
    def _post(self, kind: str, gid: str | None, amount: int, cause: str, t: datetime) -> None:
        seq = self.seq = self.seq + 1
        avail = self.remaining - self.overdraft
        prev, engineer = self.head, self.engineer_id
        digest = self.head = ledger_posting_hash(prev, engineer, seq, kind, gid, amount, cause, t, avail)
        self.postings.append(_new_posting(engineer, seq, kind, gid, amount, cause, t, avail, prev, digest))

    def _check_alerts(self, cause: str, t: datetime) -> None:
        self.fired, self.od_flag = _alerts.evaluate(
            self.engineer_id, self.thresholds, self.fired, self.od_flag,
            self.open_amount, self.remaining, self.overdraft, cause, t, self.alerts,
        )

    def drain(self) -> tuple[list[Posting], list[_alerts.Alert], list[Report]]:
        out = (self.postings, self.alerts, self.reports)
        self.postings, self.alerts, self.reports = [], [], []
        return out

    def balance(self) -> Balance:
        consumed, overdraft, remaining = self.consumed, self.overdraft, self.remaining
        # Positional, in _BALANCE_ORDER (checked at import), without the frozen
        # __init__: the worker builds one per changed book.
        return _new_balance(
            self.issued, consumed, overdraft, self.expired, self.revoked, self.forfeited, remaining,
            remaining - overdraft, consumed + overdraft, self.input_tokens, self.output_tokens,
            self.cache_read_tokens, self.cache_write_tokens, self.unpriced, self.refund_unapplied,
        )

    def check_conservation(self) -> None:
        if self.issued != (self.consumed + self.expired + self.revoked + self.forfeited
                           + self.remaining):
            raise LedgerError(f"conservation broken for engineer {self.engineer_id!r}")

    def clone(self, record: bool = False) -> "Ledger":
        """Independent copy (outputs not copied); used for provisional folds."""
        c = Ledger(self.engineer_id, record=record, thresholds=self.thresholds)
        c.lots = [lot.copy() for lot in self.lots]
        c.open = {lot.grant_id: lot for lot in c.lots}
        c.closed = set(self.closed)
        c.expiries = list(self.expiries)
        for name in _COPIED:
            setattr(c, name, getattr(self, name))
        return c


_COPIED = (
    "issued", "consumed", "overdraft", "expired", "revoked", "forfeited", "refund_unapplied",
    "remaining", "open_amount", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "unpriced", "fired", "od_flag", "seq", "head",
)
