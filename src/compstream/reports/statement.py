"""One engineer's compute-compensation statement for one UTC month.

The document has two balance windows: `period` (what happened in the month)
and `to_date` (the balance at the month's end, i.e. the ledger's replay as of
end - 1 us). Both come from the same postings the hash chain protects, so a
statement reconciles with `compstream audit verify` and the period digest.
"""

from __future__ import annotations

from datetime import datetime, timezone

from compstream.domain.events import format_time
from compstream.domain.grant_labels import parse_kind
from compstream.history.store import HistoryStore
from compstream.history.verify import period_digest
from compstream.reports import queries as q
from compstream.reports.finality import finality, late_adjustments
from compstream.reports.money import ratio_ppm
from compstream.reports.period import Period, ReportError, parse_period

SCHEMA = "compstream-statement-v1"
_WINDOWS = ("period", "to_date")
_CLOSED = {"expire": "expired", "revoke": "revoked", "forfeit": "forfeited"}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _windows(store: HistoryStore, period: Period, engineer_id: str) -> dict[str, dict]:
    params = q.params(period, engineer_id)
    out: dict[str, dict] = {w: {c: 0 for c in q.BALANCE_COLUMNS + q.TOKEN_COLUMNS} for w in _WINDOWS}
    for row in q.fetch(store, q.STATEMENT_BALANCES, params, ("w",) + q.BALANCE_COLUMNS):
        out[row.pop("w")].update({k: int(v) for k, v in row.items()})
    for row in q.fetch(store, q.STATEMENT_TOKENS, params, ("w",) + q.TOKEN_COLUMNS):
        # priced_cost_nanos sums the usage events' prices; the ledger's usage
        # cost is the posting side (they differ by unapplied refunds).
        out[row.pop("w")].update({k: int(v) for k, v in row.items()})
    to_date = out["to_date"]
    # Conservation (issued = consumed + expired + revoked + forfeited + remaining)
    # defines remaining; it is a balance, so only the to-date window has it.
    to_date["remaining_nanos"] = (
        to_date["issued_nanos"] - to_date["consumed_nanos"] - to_date["expired_nanos"]
        - to_date["revoked_nanos"] - to_date["forfeited_nanos"]
    )
    to_date["available_nanos"] = to_date["remaining_nanos"] - to_date["overdraft_nanos"]
    return out


def _usage(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    models = []
    providers: dict[str, dict] = {}
    for row in rows:
        row = {k: (int(v) if k not in ("provider", "model") else v) for k, v in row.items()}
        models.append({"id": f"{row['provider']}/{row['model']}", **row})
        agg = providers.setdefault(row["provider"], {"id": row["provider"], "provider": row["provider"]})
        for key in q.TOKEN_COLUMNS:
            agg[key] = agg.get(key, 0) + row[key]
    by_provider = sorted(providers.values(), key=lambda p: (-p["priced_cost_nanos"], p["provider"]))
    return models, by_provider


def _policy_fields(grant_kind: str | None) -> dict:
    """Which policy version and rule issued a grant (None for grants from elsewhere);
    `compstream grants issue` writes them into the kind (domain/grant_labels.py)."""
    label = parse_kind(grant_kind)
    if label is None:
        return {"policy": None, "policy_rule": None}
    return {"policy": label.policy_label, "policy_rule": label.line}


def _lots(rows: list[dict]) -> list[dict]:
    lots = []
    for row in rows:
        remaining = int(row["remaining_end_nanos"])
        status = "open" if remaining > 0 else _CLOSED.get(row["closed_by"], "used up")
        lots.append({
            "id": row["grant_id"], "grant_id": row["grant_id"], "grant_kind": row["grant_kind"],
            **_policy_fields(row["grant_kind"]),
            "issued_at": _iso(row["issued_at"]), "expires_at": _iso(row["expires_at"]), "status": status,
            **{k: int(row[k]) for k in q.LOTS_COLUMNS if k.endswith("_nanos")},
        })
    return lots


def _cash(store: HistoryStore, period: Period, engineer_id: str, totals: dict) -> dict | None:
    row = q.fetch(store, q.CASH, q.params(period, engineer_id), q.CASH_COLUMNS)[0]
    if not int(row["n"]):
        return None
    annual = int(row["annual_cash_nanos"])
    # Integer math on purpose: a share of pay must reproduce to the digit.
    monthly = annual // 12
    return {
        "annual_cash_nanos": annual, "effective_at": _iso(row["effective_at"]), "monthly_cash_nanos": monthly,
        "granted_share_ppm": ratio_ppm(totals["issued_nanos"], monthly),
        "used_share_ppm": ratio_ppm(totals["usage_cost_nanos"], monthly),
    }


def _digest(store: HistoryStore, period: Period, engineer_id: str) -> dict:
    fresh = period_digest(store, period.label)
    head = q.fetch(store, q.CHAIN_HEAD, q.params(period, engineer_id), q.CHAIN_HEAD_COLUMNS)[0]
    stored = [d.digest for d in store.digests(period.label)]
    return {
        "period": period.label, "digest": fresh.digest, "engineers": fresh.engineers, "postings": fresh.postings,
        "engineer_head_seq": int(head["seq"]) if int(head["n"]) else 0,
        "engineer_head_hash": head["hash"] if int(head["n"]) else None,
        "stored_digests": len(stored),
        # None = never published; False would be evidence of a rewrite (run audit verify).
        "matches_stored": None if not stored else all(d == fresh.digest for d in stored),
    }


def build_statement(store: HistoryStore, engineer_id: str, period_text: str,
                    generated_at: datetime | None = None) -> dict:
    """The statement document (JSON-ready: ints, strings, lists, dicts)."""
    if not engineer_id:
        raise ReportError("engineer id must not be empty")
    period = parse_period(period_text, allow_quarter=False)
    known = q.fetch(store, q.KNOWN_ENGINEER, {"e": engineer_id}, ("rows",))[0]["rows"]
    if not int(known):
        raise ReportError(f"no history for engineer {engineer_id!r}")
    params = q.params(period, engineer_id)
    windows = _windows(store, period, engineer_id)
    models, providers = _usage(q.fetch(store, q.USAGE_BY_MODEL, params, ("provider", "model") + q.TOKEN_COLUMNS))
    kinds = [{"id": r["grant_kind"], "grant_kind": r["grant_kind"], **_policy_fields(r["grant_kind"]),
              "grants": int(r["grants"]), "amount_nanos": int(r["amount_nanos"])}
             for r in q.fetch(store, q.GRANTED_BY_KIND, params, q.GRANTED_BY_KIND_COLUMNS)]
    return {
        "schema": SCHEMA, "report": "statement", "engineer_id": engineer_id, "period": period.label,
        "period_start": _iso(period.start), "period_end": _iso(period.end),
        "generated_at": _iso(generated_at or datetime.now(timezone.utc)), "money_unit": "nano-USD",
        "period_totals": windows["period"], "to_date": windows["to_date"],
        "granted_by_kind": kinds, "usage_by_model": models, "usage_by_provider": providers,
        "lots": _lots(q.fetch(store, q.LOTS, params, q.LOTS_COLUMNS)),
        "cash": _cash(store, period, engineer_id, windows["period"]),
        "digest": _digest(store, period, engineer_id),
        "finality": finality(store, period, {k: windows["period"][k] for k in q.BALANCE_COLUMNS}, engineer_id),
        "late_adjustments": late_adjustments(store, period, engineer_id),
    }
