"""Statement SQL. Every read is `FINAL` (retry duplicates collapse at query
time, docs/auditing.md "Exactly once"); usage events are additionally
`LIMIT 1 BY engineer_id, event_id` because the ledger deduplicates per
engineer by event_id (contract rule 5) and the report must count what the
ledger counted. Money is summed as Int64 nano-dollars in the engine.
"""

from __future__ import annotations

from datetime import datetime

from compstream.domain.tokens import TOKENS_SQL
from compstream.history.rows import utc
from compstream.history.store import HistoryStore
from compstream.reports.period import Period, ReportError

_T = "DateTime64(6, 'UTC')"
# The ledger's balance fields, derived from posting kinds exactly as the fold
# derives them: refunds give back consumption, overdraft refunds overdraft.
BALANCE_SQL = """
    sumIf(a, kind = 'issue') AS issued_nanos,
    sumIf(a, kind = 'consume') - sumIf(a, kind = 'refund') AS consumed_nanos,
    sumIf(a, kind = 'overdraft') - sumIf(a, kind = 'overdraft_refund') AS overdraft_nanos,
    sumIf(a, kind = 'expire') AS expired_nanos,
    sumIf(a, kind = 'revoke') AS revoked_nanos,
    sumIf(a, kind = 'forfeit') AS forfeited_nanos,
    sumIf(a, kind = 'refund_unapplied') AS refund_unapplied_nanos,
    consumed_nanos + overdraft_nanos AS usage_cost_nanos"""
BALANCE_COLUMNS = (
    "issued_nanos", "consumed_nanos", "overdraft_nanos", "expired_nanos", "revoked_nanos",
    "forfeited_nanos", "refund_unapplied_nanos", "usage_cost_nanos",
)
# Aliases must not shadow a source column used by a later aggregate (the
# engine resolves aliases first), hence priced_cost_nanos, not cost_nanos.
# tokens: domain/tokens.py (cache reads/writes are inside input_tokens).
TOKEN_SQL = f"""
    count() AS usage_events,
    countIf(cost_nanos IS NULL) AS unpriced_events,
    sum(coalesce(cost_nanos, 0)) AS priced_cost_nanos,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    {TOKENS_SQL} AS tokens"""
TOKEN_COLUMNS = (
    "usage_events", "unpriced_events", "priced_cost_nanos", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "tokens",
)


def ts(value: datetime) -> str:
    """Parameter text for DateTime64(6, 'UTC'); avoids client tz guessing."""
    return utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def fetch(store: HistoryStore, sql: str, params: dict, columns: tuple[str, ...]) -> list[dict]:
    """Run `sql` ({db} = the store's database) and name the columns."""
    rows = store.query_rows(sql.replace("{db}", store.database), params)
    out = []
    for row in rows:
        if len(row) != len(columns):
            raise ReportError(f"query returned {len(row)} columns, expected {len(columns)}")
        out.append({name: (utc(v) if isinstance(v, datetime) else v) for name, v in zip(columns, row, strict=False)})
    return out


def usage_events(where: str) -> str:
    """Distinct usage events (per engineer and event_id) matching `where`."""
    return (f"(SELECT * FROM {{db}}.events FINAL WHERE type = 'usage' AND {where} "
            "ORDER BY ingest_time, kafka_topic, kafka_partition, kafka_offset LIMIT 1 BY engineer_id, event_id)")


def params(period: Period, engineer_id: str | None = None) -> dict:
    out = {"s": ts(period.start), "t": ts(period.end)}
    if engineer_id is not None:
        out["e"] = engineer_id
    return out


IN_PERIOD = f"event_time >= {{s:{_T}}} AND event_time < {{t:{_T}}}"
BEFORE_END = f"event_time < {{t:{_T}}}"
ONE = "engineer_id = {e:String}"

# Two windows in one scan: 'period' = [start, end), 'to_date' = (-inf, end),
# the latter being the balance at period end (replay as of end - 1 us).
STATEMENT_BALANCES = f"""
SELECT w, {BALANCE_SQL}
FROM (SELECT amount_nanos AS a, kind,
             arrayJoin(if(event_time >= {{s:{_T}}}, ['period', 'to_date'], ['to_date'])) AS w
      FROM {{db}}.postings FINAL WHERE {ONE} AND {BEFORE_END})
GROUP BY w"""

STATEMENT_TOKENS = f"""
SELECT w, {TOKEN_SQL}
FROM (SELECT *, arrayJoin(if(event_time >= {{s:{_T}}}, ['period', 'to_date'], ['to_date'])) AS w
      FROM {usage_events(f"{ONE} AND {BEFORE_END}")})
GROUP BY w"""

GRANTED_BY_KIND = f"""
SELECT if(e.grant_kind IS NULL OR e.grant_kind = '', '(unknown)', e.grant_kind) AS grant_kind,
       count() AS grants, sum(p.amount_nanos) AS amount_nanos
FROM (SELECT amount_nanos, cause_event_id FROM {{db}}.postings FINAL
      WHERE {ONE} AND kind = 'issue' AND {IN_PERIOD}) AS p
LEFT JOIN (SELECT event_id, any(grant_kind) AS grant_kind FROM {{db}}.events FINAL
           WHERE {ONE} AND type = 'grant_issued' GROUP BY event_id) AS e
       ON e.event_id = p.cause_event_id
GROUP BY grant_kind ORDER BY amount_nanos DESC, grant_kind"""
GRANTED_BY_KIND_COLUMNS = ("grant_kind", "grants", "amount_nanos")

USAGE_BY_MODEL = f"""
SELECT provider, model, {TOKEN_SQL}
FROM {usage_events(f"{ONE} AND {IN_PERIOD}")}
GROUP BY provider, model ORDER BY priced_cost_nanos DESC, tokens DESC, provider, model"""

# One row per grant that mattered in the period: it moved, or it was still open.
# A lot closed with nothing left posts no closing row (the fold skips zero).
LOTS = f"""
SELECT l.grant_id, coalesce(g.grant_kind, '(unknown)'), l.issued_at, g.expires_at,
       l.issued_nanos, l.consumed_before_nanos, l.consumed_in_period_nanos,
       l.expired_nanos, l.revoked_nanos, l.forfeited_nanos, l.remaining_end_nanos, l.closed_by
FROM (
    SELECT grant_id,
           minIf(event_time, kind = 'issue') AS issued_at,
           sumIf(amount_nanos, kind = 'issue') AS issued_nanos,
           sumIf(amount_nanos, kind = 'consume' AND event_time < {{s:{_T}}})
             - sumIf(amount_nanos, kind = 'refund' AND event_time < {{s:{_T}}}) AS consumed_before_nanos,
           sumIf(amount_nanos, kind = 'consume' AND event_time >= {{s:{_T}}})
             - sumIf(amount_nanos, kind = 'refund' AND event_time >= {{s:{_T}}}) AS consumed_in_period_nanos,
           sumIf(amount_nanos, kind = 'expire') AS expired_nanos,
           sumIf(amount_nanos, kind = 'revoke') AS revoked_nanos,
           sumIf(amount_nanos, kind = 'forfeit') AS forfeited_nanos,
           issued_nanos - consumed_before_nanos - consumed_in_period_nanos
             - expired_nanos - revoked_nanos - forfeited_nanos AS remaining_end_nanos,
           anyIf(kind, kind IN ('expire', 'revoke', 'forfeit')) AS closed_by,
           countIf(event_time >= {{s:{_T}}}) AS period_postings
    FROM {{db}}.postings FINAL
    WHERE {ONE} AND grant_id IS NOT NULL AND {BEFORE_END}
    GROUP BY grant_id
    HAVING period_postings > 0 OR remaining_end_nanos != 0
) AS l
LEFT JOIN (SELECT grant_id, any(grant_kind) AS grant_kind, any(expires_at) AS expires_at
           FROM {{db}}.events FINAL WHERE {ONE} AND type = 'grant_issued' GROUP BY grant_id) AS g
       ON g.grant_id = l.grant_id
ORDER BY l.issued_at, l.grant_id"""
LOTS_COLUMNS = (
    "grant_id", "grant_kind", "issued_at", "expires_at", "issued_nanos", "consumed_before_nanos",
    "consumed_in_period_nanos", "expired_nanos", "revoked_nanos", "forfeited_nanos",
    "remaining_end_nanos", "closed_by",
)

# The latest pay that is effective in or before the period; Kafka order breaks ties.
CASH = f"""
SELECT count() AS n,
       argMax(annual_cash_nanos, (event_time, ingest_time, kafka_topic, kafka_partition, kafka_offset)),
       max(event_time)
FROM {{db}}.events FINAL WHERE {ONE} AND type = 'cash_compensation' AND {BEFORE_END}"""
CASH_COLUMNS = ("n", "annual_cash_nanos", "effective_at")

CHAIN_HEAD = f"""
SELECT count() AS n, max(seq), argMax(hash, (seq, hash))
FROM {{db}}.postings FINAL WHERE {ONE} AND {BEFORE_END}"""
CHAIN_HEAD_COLUMNS = ("n", "seq", "hash")

KNOWN_ENGINEER = f"""
SELECT (SELECT count() FROM {{db}}.postings FINAL WHERE {ONE})
     + (SELECT count() FROM {{db}}.events FINAL WHERE {ONE})"""
