from __future__ import annotations

from collections import defaultdict

import pytest

from compstream.domain.balance import BALANCE_FIELDS
from compstream.domain.replay import replay_detailed
from compstream.history import HistoryError, open_history
from compstream.history.verify import period_digest, store_digest
from compstream.reports.period import ReportError, parse_period
from compstream.reports.statement import build_statement

from . import helpers as h

LEDGER_TYPES = ("grant_issued", "grant_revoked", "engineer_offboarded", "usage")


def _ledger_engineers(events) -> list[str]:
    return sorted({e.engineer_id for e in events if e.type in LEDGER_TYPES})


def test_to_date_equals_replay_at_period_end_field_by_field(store, events):
    expected = h.balances_at_end(events, "2026-10")
    engineers = _ledger_engineers(events)
    assert len(engineers) >= 38
    for eng in engineers:
        doc = build_statement(store, eng, "2026-10")
        bal = expected[eng]
        got = {f: doc["to_date"][f] for f in BALANCE_FIELDS}
        assert got == bal.to_dict(), eng


@pytest.mark.parametrize("period", ["2026-09", "2026-10", "2026-11"])
def test_period_totals_equal_replay_delta(store, events, period):
    delta = h.period_delta(events, period)
    # Every engineer with an edge case, plus a few ordinary ones.
    for eng in ("eng-00000", "eng-00003", "eng-00005", "eng-00007", "eng-00011", "eng-00010", "zed", "yan"):
        doc = build_statement(store, eng, period)
        want = delta.get(eng, {f: 0 for f in h.FLOW_FIELDS})
        assert {f: doc["period_totals"][f] for f in h.FLOW_FIELDS} == {f: want[f] for f in h.FLOW_FIELDS}, (eng, period)


def test_edge_cases_are_exercised(store, events):
    zed, yan = build_statement(store, "zed", "2026-10"), build_statement(store, "yan", "2026-10")
    assert zed["period_totals"]["overdraft_nanos"] > 0
    assert yan["period_totals"]["refund_unapplied_nanos"] > 0
    assert build_statement(store, "eng-00011", "2026-10")["period_totals"]["forfeited_nanos"] > 0
    assert build_statement(store, "eng-00003", "2026-10")["period_totals"]["revoked_nanos"] > 0
    sep = build_statement(store, "eng-00000", "2026-10")
    assert sep["period_totals"]["expired_nanos"] > 0
    assert sep["to_date"]["issued_nanos"] > sep["period_totals"]["issued_nanos"]


def test_usage_by_model_and_provider_equal_the_events(store, events):
    for eng in ("eng-00000", "zed", "yan", "eng-00012"):
        doc = build_statement(store, eng, "2026-10")
        want = h.usage_by_model(h.usage_in(events, "2026-10", eng))
        got = {m["id"]: {k: m[k] for k in next(iter(want.values()))} for m in doc["usage_by_model"]}
        assert got == want, eng
        by_provider = defaultdict(int)
        for m in doc["usage_by_model"]:
            by_provider[m["provider"]] += m["priced_cost_nanos"]
        assert {p["provider"]: p["priced_cost_nanos"] for p in doc["usage_by_provider"]} == dict(by_provider)
        # The ledger's usage cost = priced list value + refunds it could not apply.
        totals = doc["period_totals"]
        assert sum(by_provider.values()) + totals["refund_unapplied_nanos"] == totals["usage_cost_nanos"], eng


def test_granted_by_kind_and_lots_equal_the_ledger_postings(store, events):
    period = parse_period("2026-10")
    postings = replay_detailed(events).postings
    for eng in ("eng-00000", "eng-00003", "eng-00011", "zed", "yan"):
        doc = build_statement(store, eng, "2026-10")
        kinds = {e.grant_id: e.kind for e in events if e.type == "grant_issued" and e.engineer_id == eng}
        want_kinds = defaultdict(int)
        lots: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for p in postings[eng]:
            if p.event_time >= period.end or p.grant_id is None:
                continue
            inside = p.event_time >= period.start
            lot = lots[p.grant_id]
            lot["moved"] += inside
            sign = -1 if p.kind == "refund" else 1
            if p.kind == "issue":
                lot["issued_nanos"] += p.amount_nanos
                want_kinds[kinds[p.grant_id]] += p.amount_nanos if inside else 0
            elif p.kind in ("consume", "refund"):
                lot["consumed_in_period_nanos" if inside else "consumed_before_nanos"] += sign * p.amount_nanos
            else:
                column = {"expire": "expired_nanos", "revoke": "revoked_nanos", "forfeit": "forfeited_nanos"}[p.kind]
                lot[column] += p.amount_nanos
        assert {k["grant_kind"]: k["amount_nanos"] for k in doc["granted_by_kind"]} == {
            k: v for k, v in want_kinds.items() if v}
        for lot in lots.values():
            lot["remaining_end_nanos"] = lot["issued_nanos"] - sum(
                lot[k] for k in ("consumed_before_nanos", "consumed_in_period_nanos", "expired_nanos",
                                 "revoked_nanos", "forfeited_nanos"))
        want = {gid: {k: v for k, v in lot.items() if k != "moved"} for gid, lot in lots.items()
                if lot["moved"] or lot["remaining_end_nanos"]}
        got = {lot["grant_id"]: {k: lot[k] for k in want.get(lot["grant_id"], {})} for lot in doc["lots"]}
        assert got == want, eng
        for lot in doc["lots"]:
            assert lot["grant_kind"] == kinds[lot["grant_id"]]
            assert (lot["status"] == "open") == (lot["remaining_end_nanos"] > 0)


def test_cash_share_uses_latest_pay_effective_in_or_before_the_period(store):
    doc = build_statement(store, "eng-00000", "2026-10")
    annual = 240_000 * 10**9 + 7  # the Oct 15 raise; the December one is later
    monthly = annual // 12
    assert doc["cash"]["annual_cash_nanos"] == annual and doc["cash"]["monthly_cash_nanos"] == monthly
    assert doc["cash"]["used_share_ppm"] == doc["period_totals"]["usage_cost_nanos"] * 10**6 // monthly
    assert doc["cash"]["granted_share_ppm"] == doc["period_totals"]["issued_nanos"] * 10**6 // monthly
    assert build_statement(store, "eng-00000", "2026-09")["cash"]["annual_cash_nanos"] == 180_000 * 10**9
    assert build_statement(store, "eng-00001", "2026-10")["cash"] is None


def test_digest_and_chain_head(store, events):
    doc = build_statement(store, "zed", "2026-10")
    fresh = period_digest(store, "2026-10")
    assert doc["digest"]["digest"] == fresh.digest and doc["digest"]["engineers"] == fresh.engineers
    end = parse_period("2026-10").end
    head = [p for p in replay_detailed(events).postings["zed"] if p.event_time < end][-1]
    assert (doc["digest"]["engineer_head_seq"], doc["digest"]["engineer_head_hash"]) == (head.seq, head.hash)
    assert doc["digest"]["matches_stored"] is None


def test_stored_digest_is_compared(tmp_path, report_history):
    # A private copy: storing a digest must not change the shared history.
    dsn, evs = report_history
    store = open_history(dsn, database="digestcopy")
    try:
        store.migrate()
        from . import scenario

        scenario.build(store, [e for e in evs if e.engineer_id in ("zed", "yan")])
        store_digest(store, "2026-10")
        assert build_statement(store, "zed", "2026-10")["digest"]["matches_stored"] is True
    finally:
        store.command("DROP DATABASE IF EXISTS digestcopy")
        store.close()


def test_refusals(store):
    with pytest.raises(ReportError, match="no history"):
        build_statement(store, "nobody", "2026-10")
    with pytest.raises(ReportError, match="YYYY-MM"):
        build_statement(store, "zed", "2026-Q4")
    with pytest.raises(ReportError, match="01..12"):
        build_statement(store, "zed", "2026-13")
    memory = open_history("memory://")
    with pytest.raises(HistoryError, match="ClickHouse"):
        build_statement(memory, "zed", "2026-10")
