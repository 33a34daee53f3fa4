"""Adapter rows -> priced, attributed, canonical `Usage` events (pure but for the journal).

For each `SourceRow`:
1. its original event id is deterministic (ids.event_id, or the row's own id
   for canonical JSONL);
2. the journal says whether it is new, unchanged (no event), stale (an older
   GCP export; no event) or restated (a correction event with the deltas);
3. attribution follows the identity map (identity.py);
4. the cost is the provider-reported one when the source has it, else
   genai-prices at the row's own time; unknown models stay unpriced with a
   reason.

Rejections and skipped rows are counted in the Summary, never turned into events.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Iterator

from compstream.domain.events import Usage, parse_time
from compstream.ingest import ids
from compstream.ingest.identity import UNATTRIBUTED, IdentityMap
from compstream.ingest.journal import Entry, Journal
from compstream.ingest.model import AdapterItem, Rejection, RowError, Skipped, SourceRow, TokenCounts
from compstream.ingest.pricing import Price, price_tokens, provider_version, usd_to_nanos

REJECTIONS_KEPT_MAX = 1000

Pricer = Callable[[str, str, datetime, TokenCounts, dict], Price]


@dataclass
class Summary:
    rows_read: int = 0
    events: int = 0
    originals: int = 0
    corrections: int = 0
    unchanged: int = 0
    stale: int = 0
    skipped: int = 0
    rejected: int = 0
    unattributed: int = 0
    unpriced: int = 0
    cost_nanos: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    skipped_reasons: Counter = field(default_factory=Counter)

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        if len(self.rejections) < REJECTIONS_KEPT_MAX:
            self.rejections.append(rejection)

    def count_event(self, event: Usage) -> None:
        self.events += 1
        if event.corrects_event_id is None:
            self.originals += 1
        else:
            self.corrections += 1
        if event.engineer_id == UNATTRIBUTED:
            self.unattributed += 1
        if event.cost_nanos is None:
            self.unpriced += 1
        else:
            self.cost_nanos += event.cost_nanos


def _canonical_tokens(tokens: TokenCounts) -> dict[str, int]:
    return {
        "input": tokens.input,
        "output": tokens.output,
        "cache_read": tokens.cache_read,
        "cache_write": tokens.cache_write,
    }


def _fingerprint(row: SourceRow) -> str:
    return ids.fingerprint(
        {
            "model": row.model,
            "tokens": row.tokens.as_dict(),
            "provider_cost_usd": None if row.provider_cost_usd is None else str(row.provider_cost_usd.normalize()),
            "unpriced_reason": row.unpriced_reason if row.source == "jsonl" else None,
        }
    )


class Converter:
    def __init__(self, journal: Journal, identity: IdentityMap | None = None, pricer: Pricer | None = None):
        self.journal = journal
        self.identity = identity or IdentityMap.empty()
        self.pricer = pricer or price_tokens
        self.summary = Summary()

    # --- pricing ----------------------------------------------------------
    def _price(self, row: SourceRow) -> Price:
        if row.provider_cost_usd is not None:
            version = row.price_version if row.source == "jsonl" and row.price_version else provider_version(row.source)
            return Price(usd_to_nanos(row.provider_cost_usd), version)
        if row.source == "jsonl" and row.unpriced_reason:
            return Price(None, row.price_version or "", row.unpriced_reason)
        return self.pricer(row.provider, row.model, row.occurred_at, row.tokens, dict(row.price_context))

    # --- conversion -------------------------------------------------------
    def convert(self, items: Iterable[AdapterItem]) -> Iterator[Usage]:
        self.journal.begin()
        for item in items:
            if isinstance(item, Rejection):
                self.summary.rows_read += 1
                self.summary.reject(item)
                continue
            if isinstance(item, Skipped):
                self.summary.rows_read += 1
                self.summary.skipped += 1
                skip_reason = item.reason.split(" (")[0] if "superseded" in item.reason else item.reason
                self.summary.skipped_reasons[skip_reason] += 1
                continue
            self.summary.rows_read += 1
            try:
                event = self._convert_row(item)
            except RowError as exc:
                self.summary.reject(Rejection(item.location, str(exc)))
                continue
            if event is not None:
                self.summary.count_event(event)
                yield event

    def _convert_row(self, row: SourceRow) -> Usage | None:
        original_id = row.event_id or ids.event_id(row.source, row.identity)
        key = ids.identity_key(row.identity)
        fingerprint = _fingerprint(row)
        entry = self.journal.get(original_id)
        if entry is None:
            return self._original(row, original_id, key, fingerprint)
        if row.revision_marker and entry.revision_marker and row.revision_marker < entry.revision_marker:
            self.summary.stale += 1
            return None
        if entry.fingerprint == fingerprint or (entry.fingerprint is None and self._matches_rebuilt(entry, row)):
            if entry.fingerprint is None or (row.revision_marker or "") > (entry.revision_marker or ""):
                entry.fingerprint = fingerprint
                entry.revision_marker = row.revision_marker or entry.revision_marker
                self.journal.put(entry)
            self.summary.unchanged += 1
            return None
        if row.corrects_event_id is not None:
            # A canonical correction re-sent with other numbers is a conflict, not a restatement.
            raise RowError(f"event {original_id} was ingested before with other numbers; corrections are immutable")
        return self._correction(row, entry, fingerprint)

    def _matches_rebuilt(self, entry: Entry, row: SourceRow) -> bool:
        if entry.tokens != _canonical_tokens(row.tokens):
            return False
        if row.provider_cost_usd is not None:
            return entry.booked_cost_nanos == usd_to_nanos(row.provider_cost_usd)
        return True

    def _detail(self, row: SourceRow) -> dict:
        return {
            "provider": row.provider,
            "model": row.model,
            "occurred_at": row.occurred_at.isoformat(),
            "tokens": row.tokens.as_dict(),
            "price_context": [list(pair) for pair in row.price_context],
            "provider_cost": row.provider_cost_usd is not None,
        }

    def _original(self, row: SourceRow, event_id: str, key: str, fingerprint: str) -> Usage:
        attribution = self.identity.attribute(row)
        price = self._price(row)
        event = Usage(
            event_id=event_id,
            engineer_id=attribution.engineer_id,
            provider=row.provider,
            model=row.model,
            occurred_at=row.occurred_at,
            input_tokens=row.tokens.input,
            output_tokens=row.tokens.output,
            cache_read_tokens=row.tokens.cache_read,
            cache_write_tokens=row.tokens.cache_write,
            cost_nanos=price.cost_nanos,
            unpriced_reason=price.unpriced_reason,
            price_version=price.price_version or None,
            corrects_event_id=row.corrects_event_id,
        )
        self.journal.put(
            Entry(
                event_id=event_id,
                source=row.source,
                identity_key=key,
                engineer_id=attribution.engineer_id,
                revision=1,
                fingerprint=fingerprint,
                revision_marker=row.revision_marker,
                tokens=_canonical_tokens(row.tokens),
                booked_cost_nanos=price.cost_nanos or 0,
                unpriced_reason=price.unpriced_reason if price.cost_nanos is None else None,
                price_version=price.price_version or None,
                detail=self._detail(row),
            )
        )
        return event

    def _correction(self, row: SourceRow, entry: Entry, fingerprint: str) -> Usage:
        price = self._price(row)
        revision = entry.revision + 1
        new_tokens = _canonical_tokens(row.tokens)
        if price.cost_nanos is None:
            delta_cost = None
            reason = price.unpriced_reason or "unpriced"
            if entry.booked_cost_nanos:
                reason += f" (restated; {entry.booked_cost_nanos} nanos booked earlier stand until repriced)"
        else:
            delta_cost = price.cost_nanos - entry.booked_cost_nanos
            reason = None
        event = Usage(
            event_id=ids.correction_id(entry.event_id, entry.identity_key or "", revision,
                                       entry.fingerprint or "", fingerprint),
            engineer_id=entry.engineer_id,  # corrections net against the original's engineer
            provider=row.provider,
            model=row.model,
            occurred_at=row.occurred_at,
            input_tokens=new_tokens["input"] - entry.tokens["input"],
            output_tokens=new_tokens["output"] - entry.tokens["output"],
            cache_read_tokens=new_tokens["cache_read"] - entry.tokens["cache_read"],
            cache_write_tokens=new_tokens["cache_write"] - entry.tokens["cache_write"],
            cost_nanos=delta_cost,
            unpriced_reason=reason,
            price_version=price.price_version or None,
            corrects_event_id=entry.event_id,
        )
        entry.revision = revision
        entry.fingerprint = fingerprint
        entry.revision_marker = row.revision_marker or entry.revision_marker
        entry.tokens = new_tokens
        if delta_cost is not None:
            entry.booked_cost_nanos += delta_cost
        entry.unpriced_reason = reason
        entry.price_version = price.price_version or entry.price_version
        entry.detail = self._detail(row)
        self.journal.put(entry)
        return event


def reprice(journal: Journal, pricer: Pricer | None = None, summary: Summary | None = None) -> Iterator[Usage]:
    """Price every journal row still unpriced; yield one correction per row that now prices.

    The correction carries zero token deltas and the cost of the row's current
    numbers minus whatever was booked for it. Rows that still do not price are
    left as they are. The caller commits the journal after delivering.
    """
    pricer = pricer or price_tokens
    summary = summary if summary is not None else Summary()
    journal.begin()
    for entry in list(journal.unpriced()):
        summary.rows_read += 1
        detail = entry.detail
        if not detail or detail.get("provider_cost"):
            summary.unchanged += 1
            continue
        tokens = TokenCounts.from_dict(detail["tokens"])
        occurred_at = parse_time(detail["occurred_at"], "occurred_at")
        price = pricer(detail["provider"], detail["model"], occurred_at, tokens,
                       dict(map(tuple, detail["price_context"])))
        if price.cost_nanos is None:
            summary.unchanged += 1
            continue
        revision = entry.revision + 1
        fp = entry.fingerprint or ""
        event = Usage(
            event_id=ids.correction_id(entry.event_id, entry.identity_key or "", revision, fp,
                                       f"{fp}|{price.price_version}"),
            engineer_id=entry.engineer_id,
            provider=detail["provider"],
            model=detail["model"],
            occurred_at=occurred_at,
            input_tokens=0,
            output_tokens=0,
            cache_read_tokens=0,
            cache_write_tokens=0,
            cost_nanos=price.cost_nanos - entry.booked_cost_nanos,
            price_version=price.price_version,
            corrects_event_id=entry.event_id,
        )
        entry.revision = revision
        entry.booked_cost_nanos = price.cost_nanos
        entry.unpriced_reason = None
        entry.price_version = price.price_version
        journal.put(entry)
        summary.count_event(event)
        yield event


def reprice_events(events: Iterable[Usage], pricer: Pricer | None = None) -> list[Usage]:
    """Journal-free repricing of canonical unpriced events (canonical fields only).

    Returns one cost-only correction per event that now prices; its id is
    `<event_id>:reprice-<12 hex of the price version>`, so repricing twice with
    the same price data yields the same ids. 1-hour cache writes are priced at
    the base cache-write rate here (the canonical event does not carry the
    split); `reprice` with the journal has the split.
    """
    pricer = pricer or price_tokens
    out: list[Usage] = []
    for event in events:
        if event.cost_nanos is not None:
            continue
        tokens = TokenCounts(
            input=event.input_tokens,
            output=event.output_tokens,
            cache_read=event.cache_read_tokens,
            cache_write=event.cache_write_tokens,
        )
        price = pricer(event.provider, event.model, event.occurred_at, tokens, {})
        if price.cost_nanos is None:
            continue
        out.append(
            dataclasses.replace(
                event,
                event_id=f"{event.event_id}:reprice-{ids.digest(price.price_version, 12)}",
                input_tokens=0,
                output_tokens=0,
                cache_read_tokens=0,
                cache_write_tokens=0,
                cost_nanos=price.cost_nanos,
                unpriced_reason=None,
                price_version=price.price_version,
                corrects_event_id=event.corrects_event_id or event.event_id,
            )
        )
    return out
