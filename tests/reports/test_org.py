from __future__ import annotations

import json
from collections import defaultdict
from fractions import Fraction

import pytest

from compstream.reports.export import to_csv
from compstream.reports.org import TEAM_SIZE_MIN, build_org, gini
from compstream.reports.period import ReportError, parse_period
from compstream.reports.render_html import render_html

from . import helpers as h
from .scenario import OPTED_OUT, TINY_TEAM

FIELDS = ("issued_nanos", "consumed_nanos", "overdraft_nanos", "expired_nanos", "revoked_nanos",
          "forfeited_nanos", "usage_cost_nanos")


def _expected(events, period_text: str) -> list[dict]:
    """Per-engineer period totals straight from the ledger core and the events."""
    delta = h.period_delta(events, period_text)
    usage = h.usage_in(events, period_text)
    population = {eng for eng, ps in h.postings_in(events, period_text).items() if ps}
    population |= {e.engineer_id for e in usage}
    rows = []
    for eng in population:
        mine = [e for e in usage if e.engineer_id == eng]
        rows.append({"engineer_id": eng, **{f: delta.get(eng, {}).get(f, 0) for f in FIELDS},
                     "usage_events": len(mine), "tokens": sum(h.tokens(e) for e in mine)})
    return sorted(rows, key=lambda r: (-r["usage_cost_nanos"], r["engineer_id"]))


def _quantile(values: list[int], level: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(level * len(ordered)))]  # quantileExact: floor(level * n)


def _gini_pairwise(values: list[int]) -> Fraction:
    n, total = len(values), sum(values)
    return Fraction(sum(abs(a - b) for a in values for b in values), 2 * n * total)


def _latest(events, kind: str, field: str, before=None) -> dict:
    out = {}
    for e in sorted((e for e in events if e.type == kind), key=lambda e: e.event_time):
        if before is None or e.event_time < before:
            out[e.engineer_id] = getattr(e, field)
    return out


@pytest.mark.parametrize("period", ["2026-10", "2026-Q4"])
def test_org_numbers_equal_direct_python(store, events, period):
    doc = build_org(store, period)
    want = _expected(events, period)
    opted = {eng for eng, out in _latest(events, "leaderboard_privacy", "opted_out").items() if out}
    assert opted == set(OPTED_OUT)
    got = [{k: e[k] for k in ("engineer_id",) + FIELDS + ("usage_events", "tokens")} for e in doc["engineers"]]
    assert got == [{**w, "engineer_id": None if w["engineer_id"] in opted else w["engineer_id"]} for w in want]
    totals = doc["totals"]
    for field in FIELDS + ("usage_events", "tokens"):
        assert totals[field] == sum(w[field] for w in want), field
    assert totals["engineers"] == len(want)
    assert totals["utilisation_ppm"] == totals["usage_cost_nanos"] * 10**6 // totals["issued_nanos"]
    assert totals["breakage_ppm"] == totals["expired_nanos"] * 10**6 // totals["issued_nanos"]
    for key, field in (("issued_nanos", "issued_nanos"), ("usage_cost_nanos", "usage_cost_nanos"),
                       ("tokens", "tokens")):
        values = [w[field] for w in want]
        assert doc["distribution"][key] == {f"p{round(q * 100)}": _quantile(values, q) for q in (0.5, 0.9, 0.99)}
    for key, field in (("gini_issued", "issued_nanos"), ("gini_usage_cost", "usage_cost_nanos")):
        g = _gini_pairwise([w[field] for w in want])
        assert Fraction(doc["distribution"][key]["numerator"], doc["distribution"][key]["denominator"]) == g
    hist = doc["distribution"]["usage_cost_histogram"]
    assert sum(b["engineers"] for b in hist["bins"]) == len(want)
    for b in hist["bins"]:
        inside = [w for w in want if b["lo_nanos"] <= w["usage_cost_nanos"] < b["hi_nanos"]
                  or (b is hist["bins"][-1] and w["usage_cost_nanos"] >= b["hi_nanos"])]
        assert b["engineers"] == len(inside)


def test_models_providers_and_teams_equal_direct_python(store, events):
    doc = build_org(store, "2026-10")
    usage = h.usage_in(events, "2026-10")
    models = h.usage_by_model(usage)
    for m in doc["top_models"]:
        assert {k: m[k] for k in ("usage_events", "unpriced_events", "priced_cost_nanos", "tokens")} == {
            k: models[m["id"]][k] for k in ("usage_events", "unpriced_events", "priced_cost_nanos", "tokens")}
        assert m["engineers"] == len({e.engineer_id for e in usage if f"{e.provider}/{e.model}" == m["id"]})
    costs = [m["priced_cost_nanos"] for m in doc["top_models"]]
    assert costs == sorted(costs, reverse=True) and len(doc["top_models"]) == min(10, len(models))
    assert sum(p["priced_cost_nanos"] for p in doc["top_providers"]) == sum(e.cost_nanos or 0 for e in usage)

    end = parse_period("2026-10").end
    team_of = _latest(events, "team_assigned", "team_id", before=end)
    assert all(team_of[eng] == "team-tiny" for eng in TINY_TEAM)
    per = {w["engineer_id"]: w for w in _expected(events, "2026-10")}
    teams: dict[str, list] = defaultdict(list)
    for eng, row in per.items():
        teams[team_of.get(eng, "(no team)")].append(row)
    shown = {t: rows for t, rows in teams.items() if len(rows) >= TEAM_SIZE_MIN}
    got = {t["team"]: t for t in doc["teams"]["teams"]}
    assert set(got) == set(shown) and "team-tiny" not in got
    for team, rows in shown.items():
        assert got[team]["engineers"] == len(rows)
        assert got[team]["usage_cost_nanos"] == sum(r["usage_cost_nanos"] for r in rows)
        assert got[team]["issued_nanos"] == sum(r["issued_nanos"] for r in rows)
        assert got[team]["usage_cost_p50_nanos"] == _quantile([r["usage_cost_nanos"] for r in rows], 0.5)
    hidden = {t: rows for t, rows in teams.items() if len(rows) < TEAM_SIZE_MIN}
    assert doc["teams"]["hidden_teams"] == len(hidden)
    assert doc["teams"]["hidden_engineers"] == sum(len(r) for r in hidden.values())


def test_opted_out_engineers_are_named_nowhere(store):
    doc = build_org(store, "2026-Q4")
    assert doc["opted_out_engineers"] == len(OPTED_OUT)
    outputs = (json.dumps(doc), to_csv(doc), render_html(doc))
    for eng in OPTED_OUT:
        for text in outputs:
            assert eng not in text
    # Opted out and back in: named again.
    assert any(e["engineer_id"] == "eng-00008" for e in doc["engineers"])


def test_quarter_is_the_sum_of_its_months(store):
    quarter = build_org(store, "2026-Q4")
    months = [build_org(store, m) for m in ("2026-10", "2026-11", "2026-12")]
    for field in FIELDS + ("usage_events", "tokens"):
        assert quarter["totals"][field] == sum(m["totals"][field] for m in months), field
    assert [d["period"] for d in quarter["digests"]] == ["2026-10", "2026-11", "2026-12"]


def test_gini_edge_cases_and_bad_periods(store):
    assert gini([]) == 0 and gini([0, 0]) == 0 and gini([5, 5, 5]) == 0
    assert gini([0, 0, 0, 10]) == Fraction(3, 4)
    with pytest.raises(ReportError):
        build_org(store, "2026-Q5")
    empty = build_org(store, "2025-01")
    assert empty["totals"]["engineers"] == 0 and empty["engineers"] == [] and empty["totals"]["utilisation_ppm"] is None
    render_html(empty)  # an empty period still renders
