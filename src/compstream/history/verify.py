"""Tamper evidence: re-check every engineer's stored hash chain, and digests.

The hash function is the ledger's own (`compstream.domain.chain`); this
module only decides *what kind* of tampering explains a broken chain:

* edited    - a row's fields no longer hash to its stored hash, or a row was
              edited and re-hashed so its successor's prev_hash no longer links;
* deleted   - a seq gap (a deleted tail shows up only against a stored digest);
* inserted  - more than one row claims the same seq;
* reordered - a row's hash verifies only under another stored row's seq, i.e.
              rows were moved between positions of the chain;
* digest_mismatch - the recomputed period digest differs from a stored one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from compstream.domain.chain import CHAIN_FIELDS, GENESIS_HASH, posting_hash
from compstream.history.findings import ALL_ENGINEERS, Finding
from compstream.history.rows import DigestRow, HistoryBatch, PostingRow, period_bounds
from compstream.history.store import HistoryStore
from compstream.history.verify_replay import replay_findings

EDITED, DELETED, INSERTED, REORDERED, DIGEST_MISMATCH = (
    "edited", "deleted", "inserted", "reordered", "digest_mismatch",
)
# Reorder detection tries every bad row under every other bad row's seq;
# beyond this many bad rows in one chain we just report them as edited.
REORDER_CANDIDATES_MAX = 256
FINDINGS_MAX = 10_000
DIGEST_DOMAIN = "compstream-digest-v1"

HashFn = Callable[[PostingRow], str]


def row_hash(row: PostingRow) -> str:
    """The chain hash the row *should* carry, from the ledger's function."""
    return posting_hash(row.prev_hash, {name: getattr(row, name) for name in CHAIN_FIELDS})


@dataclass
class Report:
    engineers: int = 0
    postings: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    findings_dropped: int = 0  # past FINDINGS_MAX: counted, not kept
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)  # every finding, dropped ones too

    @property
    def clean(self) -> bool:
        return not self.findings

    def add(self, items: Iterable[Finding]) -> None:
        for item in items:
            self.kinds[item.kind] = self.kinds.get(item.kind, 0) + 1
            if len(self.findings) >= FINDINGS_MAX:
                self.findings_dropped += 1
            else:
                self.findings.append(item)

    def to_dict(self) -> dict:
        """The machine-readable report (`audit verify --json`, docs/auditing.md)."""
        return {
            "clean": self.clean,
            "summary": {
                "engineers": self.engineers,
                "postings": self.postings,
                "findings": len(self.findings) + self.findings_dropped,
                "findings_listed": len(self.findings),
                "by_kind": dict(sorted(self.kinds.items())),
            },
            "findings": [f.to_dict() for f in self.findings],
        }


def _pick_genuine(group: list[PostingRow], ok: dict[int, bool], referenced: set[str]) -> PostingRow:
    # The genuine row verifies and is what its successor links to.
    return max(group, key=lambda r: (ok[id(r)], r.hash in referenced))


def verify_chain(engineer_id: str, rows: list[PostingRow], hash_fn: HashFn = row_hash) -> list[Finding]:
    """Findings for one engineer's postings (any order), sorted by seq."""
    found: dict[tuple[int, str], Finding] = {}

    def report(seq: int, kind: str, detail: str) -> None:
        found.setdefault((seq, kind), Finding(engineer_id, seq, kind, detail))

    ok = {id(r): hash_fn(r) == r.hash for r in rows}
    referenced = {r.prev_hash for r in rows}
    by_seq: dict[int, list[PostingRow]] = defaultdict(list)
    for row in rows:
        by_seq[row.seq].append(row)

    chain: list[PostingRow] = []
    for seq in sorted(by_seq):
        group = by_seq[seq]
        keep = _pick_genuine(group, ok, referenced) if len(group) > 1 else group[0]
        for extra in group:
            if extra is not keep:
                report(seq, INSERTED,
                       f"extra row claims seq {seq} (hash {extra.hash[:12]}…, amount {extra.amount_nanos})")
        chain.append(keep)

    bad = [r for r in chain if not ok[id(r)]]
    moved: set[int] = set()
    if len(bad) <= REORDER_CANDIDATES_MAX:
        bad_seqs = [r.seq for r in bad]
        for row in bad:
            for seq in bad_seqs:
                if seq != row.seq and hash_fn(dataclasses.replace(row, seq=seq)) == row.hash:
                    report(row.seq, REORDERED, f"row chained at seq {seq} is stored at seq {row.seq}")
                    moved.add(row.seq)
                    break
    for row in bad:
        if row.seq not in moved:
            report(row.seq, EDITED, "stored fields do not hash to the stored hash")

    hashes = {r.hash: r for r in chain}
    expected, prev = 1, None
    for row in chain:
        if row.seq > expected:
            span = str(expected) if row.seq - 1 == expected else f"{expected}..{row.seq - 1}"
            report(expected, DELETED, f"seq {span} missing")
        elif row.seq == 1 and row.prev_hash != GENESIS_HASH and ok[id(row)]:
            report(1, EDITED, "first posting does not start from the genesis hash")
        elif prev is not None and row.prev_hash != prev.hash and not ({row.seq, prev.seq} & moved):
            other = hashes.get(row.prev_hash)
            if other is not None and other is not prev:
                report(row.seq, REORDERED, f"links to seq {other.seq}, not seq {prev.seq}")
            elif ok[id(prev)]:
                report(prev.seq, EDITED, f"edited and re-hashed: seq {row.seq} links to a different hash")
        expected, prev = row.seq + 1, row
    return sorted(found.values())


def verify_store(
    store: HistoryStore,
    *,
    engineer_id: str | None = None,
    period: str | None = None,
    hash_fn: HashFn = row_hash,
    replay: bool = False,
    engineers: list[str] | None = None,
) -> Report:
    """Verify chains (one engineer or all) and the stored digests (one period
    or all); with `replay`, also re-derive postings from the stored events."""
    report = Report()
    if engineer_id is not None:
        engineers = [engineer_id]
    elif engineers is None:
        engineers = store.engineers()
    finals: dict[int, datetime | None] = {}
    for eng in engineers:
        rows = store.postings_for(eng)
        report.engineers += 1
        report.postings += len(rows)
        report.add(verify_chain(eng, rows, hash_fn))
        if replay:
            report.add(replay_findings(store, eng, finals))
    if engineer_id is None:
        report.add(check_digests(store, period))
    return report


def check_digests(store: HistoryStore, period: str | None = None) -> list[Finding]:
    """Each stored digest must equal a fresh recomputation of its period."""
    findings = []
    fresh: dict[str, DigestRow] = {}
    for stored in store.digests(period):
        now = fresh.get(stored.period) or fresh.setdefault(stored.period, period_digest(store, stored.period))
        if now.digest != stored.digest:
            findings.append(Finding(
                ALL_ENGINEERS, 0, DIGEST_MISMATCH,
                f"period {stored.period}: stored {stored.digest[:12]}… at {stored.computed_at:%Y-%m-%dT%H:%M:%SZ} "
                f"({stored.engineers} engineers), now {now.digest[:12]}… ({now.engineers} engineers)",
            ))
    return findings


def digest_text(period: str, heads: Iterable[tuple[str, int, str]]) -> str:
    """The exact hashed text: a header, then sorted `hex(engineer):seq:hash` lines."""
    lines = sorted(f"{eng.encode('utf-8').hex()}:{seq}:{head}\n" for eng, seq, head in heads)
    return f"{DIGEST_DOMAIN}\n{period}\n" + "".join(lines)


def period_digest(store: HistoryStore, period: str, computed_at: datetime | None = None) -> DigestRow:
    """Digest over every engineer's chain head at the end of `period` (UTC month).

    The head is the highest-seq posting with event_time before the month's
    end. Compute it only after the period end plus the lateness bound, or a
    late posting will legitimately move a head (see docs/auditing.md).
    """
    _, end = period_bounds(period)
    heads = store.chain_heads(end)
    digest = hashlib.sha256(digest_text(period, heads).encode("utf-8")).hexdigest()
    return DigestRow(
        period=period,
        digest=digest,
        engineers=len(heads),
        postings=len(store.postings_by_period(period)),
        computed_at=computed_at or datetime.now(timezone.utc),
    )


def store_digest(store: HistoryStore, period: str, computed_at: datetime | None = None) -> DigestRow:
    row = period_digest(store, period, computed_at)
    store.append_batch(HistoryBatch(digests=(row,)), f"digest:{period}:{row.computed_at.isoformat()}")
    return row
