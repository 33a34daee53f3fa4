"""Org transparency report: how compute compensation is spread across people.

Privacy rules (enforced here, before anything reaches JSON, CSV or HTML):
* an engineer whose latest `leaderboard_privacy` event says opted_out is never
  named: their row carries `engineer_id: null` (their numbers still count in
  totals and distributions, or the totals would not reconcile);
* a team with fewer than TEAM_SIZE_MIN engineers in the period is not shown;
  only how many teams and engineers were withheld.
"""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

from compstream.history.store import HistoryStore
from compstream.history.verify import period_digest
from compstream.reports import org_queries as oq
from compstream.reports import queries as q
from compstream.reports.finality import finality, late_totals
from compstream.reports.money import fraction_text, ratio_ppm
from compstream.reports.period import parse_period
from compstream.reports.statement import _iso

SCHEMA = "compstream-org-v1"
TEAM_SIZE_MIN = 5
TOP_MODELS = 10
HISTOGRAM_BINS = 10
NO_TEAM = "(no team)"


def gini(values: list[int]) -> Fraction:
    """Exact Gini coefficient: sum_ij |xi - xj| / (2 n^2 mean), via the sorted
    form (2 sum_i i x_(i)) / (n sum x) - (n + 1) / n, i = 1..n. 0 if undefined."""
    n, total = len(values), sum(values)
    if n == 0 or total <= 0:
        return Fraction(0)
    weighted = sum(i * x for i, x in enumerate(sorted(values), start=1))
    return Fraction(2 * weighted, n * total) - Fraction(n + 1, n)


def _nice_width(max_value: int, bins: int) -> int:
    """Smallest 1/2/5 x 10^k nano-dollar width covering max_value in `bins` bins."""
    need = max(1, -(-max_value // bins))
    step = 1
    while True:
        for mult in (1, 2, 5):
            if step * mult >= need:
                return step * mult
        step *= 10


def histogram(values: list[int], bins: int = HISTOGRAM_BINS) -> dict:
    """Equal-width bins [lo, hi) from 0; the last bin also holds the maximum."""
    top = max(values, default=0)
    width = _nice_width(top, bins)
    while bins > 1 and width * (bins - 1) > top:  # trim empty tail bins
        bins -= 1
    counts = [0] * bins
    for value in values:
        counts[min(max(value, 0) // width, bins - 1)] += 1
    return {"width_nanos": width, "bins": [
        {"id": f"bin{i}", "lo_nanos": i * width, "hi_nanos": (i + 1) * width, "engineers": c}
        for i, c in enumerate(counts)
    ]}


def _quantiles(values: list | None, population: int) -> dict:
    # No engineers: the engine answers 0 (or NULL); "no value" is the truth.
    if not population or values is None:
        return {f"p{round(level * 100)}": None for level in oq.QUANTILES}
    return {f"p{round(level * 100)}": int(v) for level, v in zip(oq.QUANTILES, values, strict=False)}


def _gini_doc(values: list[int]) -> dict:
    g = gini(values)
    return {"numerator": g.numerator, "denominator": g.denominator, "decimal": fraction_text(g)}


def _teams(rows: list[dict]) -> dict:
    shown, hidden_teams, hidden_engineers = [], 0, 0
    for row in rows:
        engineers = int(row["engineers"])
        if engineers < TEAM_SIZE_MIN:
            hidden_teams += 1
            hidden_engineers += engineers
            continue
        name = row["team"] or NO_TEAM
        counts = {k: int(row[k]) for k in oq.TEAMS_COLUMNS[1:]}
        values: dict[str, int | None] = {
            **counts, "utilisation_ppm": ratio_ppm(counts["usage_cost_nanos"], counts["issued_nanos"])}
        shown.append({"id": name, "team": name, **values})
    return {"size_min": TEAM_SIZE_MIN, "teams": shown,
            "hidden_teams": hidden_teams, "hidden_engineers": hidden_engineers}


def build_org(store: HistoryStore, period_text: str, generated_at: datetime | None = None) -> dict:
    """The org report document for a month or a quarter."""
    period = parse_period(period_text)
    params = q.params(period)
    per = q.fetch(store, oq.PER_ENGINEER_ORDERED, params, oq.PER_ENGINEER_COLUMNS)
    opted_out = {r["engineer_id"] for r in q.fetch(store, oq.OPTED_OUT, {}, ("engineer_id",))}
    engineers: list[dict[str, Any]] = []
    for rank, row in enumerate(per, start=1):
        values = {k: int(row[k]) for k in oq.PER_ENGINEER_COLUMNS[1:]}
        named = row["engineer_id"] not in opted_out
        engineers.append({"id": f"rank{rank}", "rank": rank,
                          "engineer_id": row["engineer_id"] if named else None, **values})
    dist = q.fetch(store, oq.DISTRIBUTION, params, oq.DISTRIBUTION_COLUMNS)[0]
    # Sums over an empty population come back NULL from the engine.
    totals: dict[str, Any] = {k: int(dist[k] or 0) for k in oq.DISTRIBUTION_COLUMNS[:10]}
    totals["utilisation_ppm"] = ratio_ppm(totals["usage_cost_nanos"], totals["issued_nanos"])
    totals["breakage_ppm"] = ratio_ppm(totals["expired_nanos"], totals["issued_nanos"])
    # Late adjustments are inside the totals already (their postings are final); counted apart.
    totals.update(late_totals(store, period))
    used = [e["usage_cost_nanos"] for e in engineers]
    models = [{"id": f"{r['provider']}/{r['model']}", **{k: (v if k in ("provider", "model") else int(v))
                                                         for k, v in r.items()}}
              for r in q.fetch(store, oq.TOP_MODELS, {**params, "k": TOP_MODELS}, oq.TOP_MODELS_COLUMNS)]
    providers = [{"id": r["provider"], **{k: (v if k == "provider" else int(v)) for k, v in r.items()}}
                 for r in q.fetch(store, oq.TOP_PROVIDERS, params, oq.TOP_PROVIDERS_COLUMNS)]
    return {
        "schema": SCHEMA, "report": "org", "period": period.label,
        "period_start": _iso(period.start), "period_end": _iso(period.end),
        "generated_at": _iso(generated_at or datetime.now(timezone.utc)), "money_unit": "nano-USD",
        "totals": totals,
        "distribution": {
            "issued_nanos": _quantiles(dist["issued_quantiles"], totals["engineers"]),
            "usage_cost_nanos": _quantiles(dist["usage_cost_quantiles"], totals["engineers"]),
            "tokens": _quantiles(dist["tokens_quantiles"], totals["engineers"]),
            "gini_issued": _gini_doc([e["issued_nanos"] for e in engineers]),
            "gini_usage_cost": _gini_doc(used),
            "usage_cost_histogram": histogram(used),
        },
        "engineers": engineers,
        "opted_out_engineers": sum(1 for e in engineers if e["engineer_id"] is None),
        "top_models": models, "top_providers": providers,
        "teams": _teams(q.fetch(store, oq.TEAMS, params, oq.TEAMS_COLUMNS)),
        "digests": [{"id": m, "period": m, "digest": d.digest, "engineers": d.engineers}
                    for m in period.months for d in [period_digest(store, m)]],
        "finality": finality(store, period, {k: totals[k] for k in oq.DISTRIBUTION_COLUMNS[1:8]}),
    }
