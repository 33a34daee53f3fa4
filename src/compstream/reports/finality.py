"""How final a report is: the `finality` section and the late adjustments.

Postings are written only once final (event time before the partition's
watermark), so every posting-based number in a report is final. What the
ledger has applied but not yet made final is counted here from the events:

* `final_through`: the newest `watermarks` row of each source partition in
  scope (the history as it stands when the report runs: an older row would
  not match the events already stored). A scope's value is the minimum over
  its partitions, None if one of them has none.
* pending usage: usage events in the period with no posting yet and event
  time at or after their partition's final_through. An event is final once
  a posting of it is written (a sweep cut short may write some beyond the
  recorded watermark), so nothing is counted both final and pending.
* pending expiries: grants expiring in the period at or after final_through,
  not yet closed, with the amount still open as of final_through (issued
  minus consumed, expired, revoked and forfeited so far, plus refunds). It is
  an upper bound: pending usage may yet draw on it.

Reconciliation (tested in tests/reports/test_finality.py): for a period
holding all of an engineer's usage, final `usage_cost_nanos` + pending usage
`cost_nanos` equals `usage_cost_nanos` on the balance topic at the same
stream time, unless a pending correction refund finds nothing to return to
(`refund_unapplied`), which the ledger only knows once it is final.
"""

from __future__ import annotations

from datetime import datetime

from compstream.domain.events import format_time
from compstream.history.store import HistoryStore
from compstream.reports import queries as q
from compstream.reports.money import usd
from compstream.reports.period import Period

_T = "DateTime64(6, 'UTC')"
_S, _E = f"{{s:{_T}}}", f"{{t:{_T}}}"

# Newest watermark row per partition (rows only move forward).
MARKS = """SELECT partition, max(final_through) AS ft, argMax(stream_time, final_through) AS st
FROM {db}.watermarks FINAL GROUP BY partition"""
MARKS_COLUMNS = ("partition", "final_through", "stream_time")

_ONE = q.ONE
_ALL = "1 = 1"


def _engineers_in(scope: str) -> str:
    """Engineers with an event, a posting or an expiring grant in the period."""
    if scope != _ALL:
        return scope
    return f"""engineer_id IN (
        SELECT engineer_id FROM {{db}}.events FINAL WHERE {q.IN_PERIOD}
        UNION DISTINCT SELECT engineer_id FROM {{db}}.postings FINAL WHERE {q.IN_PERIOD}
        UNION DISTINCT SELECT engineer_id FROM {{db}}.events FINAL
                       WHERE type = 'grant_issued' AND expires_at >= {_S} AND expires_at < {_E})"""


def partitions_sql(scope: str) -> str:
    return (f"SELECT DISTINCT kafka_partition FROM {{db}}.events FINAL "
            f"WHERE {_engineers_in(scope)} ORDER BY kafka_partition")


# A usage posting carries its event's time, so the period's postings suffice.
# Unmatched LEFT JOIN columns take their type's default (join_use_nulls = 0,
# set on the query so a server default cannot turn them into NULLs):
# a partition without a watermark row has ft = 1970, so all of it is pending.
def pending_usage_sql(scope: str) -> str:
    return f"""
SELECT u.kafka_partition AS p, count() AS usage_events, sum(coalesce(u.cost_nanos, 0)) AS cost_nanos
FROM {q.usage_events(f"{scope} AND {q.IN_PERIOD}")} AS u
LEFT JOIN ({MARKS}) AS m ON m.partition = u.kafka_partition
WHERE u.event_time >= m.ft
  AND (u.engineer_id, u.event_id) NOT IN (SELECT engineer_id, cause_event_id FROM {{db}}.postings FINAL
                                          WHERE {scope} AND {q.IN_PERIOD})
GROUP BY p ORDER BY p
SETTINGS join_use_nulls = 0"""


PENDING_USAGE_COLUMNS = ("partition", "usage_events", "cost_nanos")


def pending_expiries_sql(scope: str) -> str:
    return f"""
SELECT g.engineer_id, g.kp, g.grant_id, g.expiry, g.amount - p.used AS open_nanos
FROM (SELECT engineer_id, grant_id, any(kafka_partition) AS kp, any(expires_at) AS expiry,
             any(amount_nanos) AS amount
      FROM {{db}}.events FINAL
      WHERE type = 'grant_issued' AND {scope} AND expires_at >= {_S} AND expires_at < {_E}
      GROUP BY engineer_id, grant_id) AS g
LEFT JOIN ({MARKS}) AS m ON m.partition = g.kp
LEFT JOIN (SELECT engineer_id, assumeNotNull(grant_id) AS gid,
                  sumIf(amount_nanos, kind IN ('consume', 'expire', 'revoke', 'forfeit'))
                    - sumIf(amount_nanos, kind = 'refund') AS used,
                  countIf(kind IN ('expire', 'revoke', 'forfeit')) AS closings
           FROM {{db}}.postings FINAL WHERE {scope} AND grant_id IS NOT NULL
           GROUP BY engineer_id, gid) AS p
       ON p.engineer_id = g.engineer_id AND p.gid = g.grant_id
WHERE g.expiry >= m.ft AND p.closings = 0 AND open_nanos > 0
ORDER BY g.expiry, g.engineer_id, g.grant_id
SETTINGS join_use_nulls = 0"""


PENDING_EXPIRIES_COLUMNS = ("engineer_id", "partition", "grant_id", "expires_at", "open_nanos")


def late_sql(scope: str) -> str:
    return f"""
SELECT event_id, type, event_time, grant_id, cost_nanos, amount_nanos, applied_watermark, kafka_partition
FROM {{db}}.events FINAL WHERE late AND {scope} AND {q.IN_PERIOD}
ORDER BY event_time, event_id, kafka_topic, kafka_partition, kafka_offset LIMIT 1 BY engineer_id, event_id"""


LATE_COLUMNS = ("event_id", "type", "event_time", "grant_id", "cost_nanos", "amount_nanos",
                "applied_watermark", "partition")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _marks(store: HistoryStore, partitions: list[int]) -> dict[int, dict]:
    rows = {int(r["partition"]): r for r in q.fetch(store, MARKS, {}, MARKS_COLUMNS)}
    return {p: rows.get(p, {"final_through": None, "stream_time": None}) for p in partitions}


def _final_through(marks: dict[int, dict]) -> datetime | None:
    values = [m["final_through"] for m in marks.values()]
    if not values or any(v is None for v in values):
        return None
    return min(values)


def finality(store: HistoryStore, period: Period, final: dict, engineer_id: str | None = None) -> dict:
    """The `finality` section; `final` holds the report's posting-based amounts."""
    scope = _ONE if engineer_id is not None else _ALL
    params = q.params(period, engineer_id)
    partitions = [int(r["p"]) for r in q.fetch(store, partitions_sql(scope), params, ("p",))]
    marks = _marks(store, partitions)
    usage = {int(r["partition"]): r for r in q.fetch(store, pending_usage_sql(scope), params,
                                                      PENDING_USAGE_COLUMNS)}
    lots = q.fetch(store, pending_expiries_sql(scope), params, PENDING_EXPIRIES_COLUMNS)
    through = _final_through(marks)
    per_partition = []
    for p in sorted(set(marks) | set(usage) | {int(lot["partition"]) for lot in lots}):
        mark = marks.get(p, {"final_through": None, "stream_time": None})
        mine = [lot for lot in lots if int(lot["partition"]) == p]
        per_partition.append({
            "id": f"p{p}", "partition": p, "final_through": _iso(mark["final_through"]),
            "stream_time": _iso(mark["stream_time"]),
            "pending_usage_events": int(usage[p]["usage_events"]) if p in usage else 0,
            "pending_usage_cost_nanos": int(usage[p]["cost_nanos"]) if p in usage else 0,
            "pending_expiry_lots": len(mine), "pending_expiry_open_nanos": sum(int(x["open_nanos"]) for x in mine),
        })
    doc: dict = {
        "final_through": _iso(through),
        "is_final": through is not None and through >= period.end,
        "final": {"source": "postings", **final},
        "pending_usage": {"usage_events": sum(x["pending_usage_events"] for x in per_partition),
                          "cost_nanos": sum(x["pending_usage_cost_nanos"] for x in per_partition)},
        "pending_expiries_total": {"lots": len(lots), "open_nanos": sum(int(x["open_nanos"]) for x in lots)},
        "partitions": per_partition,
    }
    if engineer_id is not None:  # the org report names no one's grants
        doc["pending_expiries"] = [
            {"id": lot["grant_id"], "grant_id": lot["grant_id"], "expires_at": _iso(lot["expires_at"]),
             "open_nanos": int(lot["open_nanos"])} for lot in lots]
    return doc


def late_adjustments(store: HistoryStore, period: Period, engineer_id: str | None = None) -> list[dict]:
    """The period's events applied after their time was final (late=True)."""
    scope = _ONE if engineer_id is not None else _ALL
    out = []
    for row in q.fetch(store, late_sql(scope), q.params(period, engineer_id), LATE_COLUMNS):
        out.append({
            "id": row["event_id"], "event_id": row["event_id"], "type": row["type"],
            "event_time": _iso(row["event_time"]), "grant_id": row["grant_id"],
            "cost_nanos": None if row["cost_nanos"] is None else int(row["cost_nanos"]),
            "amount_nanos": None if row["amount_nanos"] is None else int(row["amount_nanos"]),
            "applied_watermark": _iso(row["applied_watermark"]),
        })
    return out


LATE_TOTALS = f"""
SELECT count(), sum(coalesce(cost_nanos, 0)) FROM (
    SELECT cost_nanos FROM {{db}}.events FINAL WHERE late AND {q.IN_PERIOD} LIMIT 1 BY engineer_id, event_id)"""


def late_totals(store: HistoryStore, period: Period) -> dict[str, int]:
    """The org's late adjustments: how many, and their usage cost."""
    row = q.fetch(store, LATE_TOTALS, q.params(period), ("n", "cost"))[0]
    return {"late_events": int(row["n"]), "late_cost_nanos": int(row["cost"] or 0)}


def short_time(text: str | None) -> str:
    """'2026-10-31T18:00:00.000000Z' -> '2026-10-31T18:00Z' (seconds kept if any)."""
    if text is None:
        return "–"
    if text.endswith(":00.000000Z"):
        return text[:-11] + "Z"
    return text.replace(".000000Z", "Z")


def finality_text(section: dict) -> str:
    """One line: 'final through T (period not final: N usage events, $x pending; M expiries pending)'."""
    through = section["final_through"]
    head = f"final through {short_time(through)}" if through else "nothing final yet"
    if section["is_final"]:
        return f"{head} (period final)"
    usage, lots = section["pending_usage"], section["pending_expiries_total"]["lots"]
    events = usage["usage_events"]
    return (f"{head} (period not final: {events} usage event{'' if events == 1 else 's'}, "
            f"{usd(usage['cost_nanos'])} pending; {lots} expir{'y' if lots == 1 else 'ies'} pending)")
