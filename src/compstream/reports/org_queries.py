"""Org-report SQL over one period (month or quarter). Same rules as
`queries.py`: `FINAL` everywhere, usage events once per (engineer, event_id)."""

from __future__ import annotations

from compstream.domain.tokens import TOKENS_SQL
from compstream.reports.queries import IN_PERIOD, usage_events

_KAFKA_ORDER = "(event_time, ingest_time, kafka_topic, kafka_partition, kafka_offset)"
QUANTILES = (0.5, 0.9, 0.99)
_Q = ", ".join(str(level) for level in QUANTILES)

# Per-engineer period totals. The population is everyone with a posting or a
# usage event in the period (unpriced-only usage moves no money but counts).
PER_ENGINEER = f"""
SELECT engineer_id,
       sum(i) AS issued_nanos, sum(c) AS consumed_nanos, sum(o) AS overdraft_nanos,
       sum(x) AS expired_nanos, sum(r) AS revoked_nanos, sum(f) AS forfeited_nanos,
       consumed_nanos + overdraft_nanos AS usage_cost_nanos,
       sum(n) AS usage_events, sum(tk) AS tokens
FROM (
    SELECT engineer_id,
           sumIf(amount_nanos, kind = 'issue') AS i,
           sumIf(amount_nanos, kind = 'consume') - sumIf(amount_nanos, kind = 'refund') AS c,
           sumIf(amount_nanos, kind = 'overdraft') - sumIf(amount_nanos, kind = 'overdraft_refund') AS o,
           sumIf(amount_nanos, kind = 'expire') AS x,
           sumIf(amount_nanos, kind = 'revoke') AS r,
           sumIf(amount_nanos, kind = 'forfeit') AS f,
           toInt64(0) AS n, toInt64(0) AS tk
    FROM {{db}}.postings FINAL WHERE {IN_PERIOD} GROUP BY engineer_id
    UNION ALL
    SELECT engineer_id, 0, 0, 0, 0, 0, 0, toInt64(count()),
           sum({TOKENS_SQL})
    FROM {usage_events(IN_PERIOD)} GROUP BY engineer_id
)
GROUP BY engineer_id"""
PER_ENGINEER_COLUMNS = (
    "engineer_id", "issued_nanos", "consumed_nanos", "overdraft_nanos", "expired_nanos", "revoked_nanos",
    "forfeited_nanos", "usage_cost_nanos", "usage_events", "tokens",
)
PER_ENGINEER_ORDERED = f"{PER_ENGINEER}\nORDER BY usage_cost_nanos DESC, engineer_id"

DISTRIBUTION = f"""
SELECT count(), sum(issued_nanos), sum(consumed_nanos), sum(overdraft_nanos), sum(expired_nanos),
       sum(revoked_nanos), sum(forfeited_nanos), sum(usage_cost_nanos), sum(usage_events), sum(tokens),
       quantilesExact({_Q})(issued_nanos), quantilesExact({_Q})(usage_cost_nanos), quantilesExact({_Q})(tokens)
FROM ({PER_ENGINEER})"""
DISTRIBUTION_COLUMNS = (
    "engineers", "issued_nanos", "consumed_nanos", "overdraft_nanos", "expired_nanos", "revoked_nanos",
    "forfeited_nanos", "usage_cost_nanos", "usage_events", "tokens",
    "issued_quantiles", "usage_cost_quantiles", "tokens_quantiles",
)

_USAGE_AGG = f"""count() AS usage_events, countIf(isNull(cost_nanos)) AS unpriced_events,
       sum(coalesce(cost_nanos, 0)) AS priced_cost_nanos,
       sum({TOKENS_SQL}) AS tokens,
       uniqExact(engineer_id) AS engineers"""
TOP_MODELS = f"""
SELECT provider, model, {_USAGE_AGG}
FROM {usage_events(IN_PERIOD)}
GROUP BY provider, model ORDER BY priced_cost_nanos DESC, tokens DESC, provider, model LIMIT {{k:UInt32}}"""
TOP_MODELS_COLUMNS = ("provider", "model", "usage_events", "unpriced_events", "priced_cost_nanos", "tokens",
                      "engineers")
TOP_PROVIDERS = f"""
SELECT provider, {_USAGE_AGG}
FROM {usage_events(IN_PERIOD)}
GROUP BY provider ORDER BY priced_cost_nanos DESC, tokens DESC, provider"""
TOP_PROVIDERS_COLUMNS = ("provider",) + TOP_MODELS_COLUMNS[2:]

# Team = the latest assignment effective before the period's end.
TEAMS = f"""
SELECT if(isNull(t.team_id) OR t.team_id = '', '', t.team_id) AS team, count() AS engineers,
       sum(p.issued_nanos), sum(p.usage_cost_nanos), sum(p.expired_nanos), sum(p.tokens),
       quantileExact(0.5)(p.usage_cost_nanos)
FROM ({PER_ENGINEER}) AS p
LEFT JOIN (SELECT engineer_id, argMax(team_id, {_KAFKA_ORDER}) AS team_id
           FROM {{db}}.events FINAL
           WHERE type = 'team_assigned' AND event_time < {{t:DateTime64(6, 'UTC')}}
           GROUP BY engineer_id) AS t ON t.engineer_id = p.engineer_id
GROUP BY team ORDER BY team"""
TEAMS_COLUMNS = ("team", "engineers", "issued_nanos", "usage_cost_nanos", "expired_nanos", "tokens",
                 "usage_cost_p50_nanos")

# Privacy follows the engineer's latest choice, whenever made: a report made
# today must not name someone who opted out after the period.
OPTED_OUT = f"""
SELECT engineer_id FROM {{db}}.events FINAL WHERE type = 'leaderboard_privacy'
GROUP BY engineer_id HAVING argMax(opted_out, {_KAFKA_ORDER}) = true ORDER BY engineer_id"""
