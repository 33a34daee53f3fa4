"""Finality and late adjustments: a history streamed through the real
LedgerProcessor with a lateness, stopped before the month is final, checked
against an independent computation from the events fed and against the
balance topic records the processor would publish."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from compstream.cli.main import app
from compstream.codec import decode_record, encode_event
from compstream.domain.events import GrantIssued, Usage
from compstream.history import open_history
from compstream.reports.export import to_csv
from compstream.reports.finality import finality_text
from compstream.reports.money import usd
from compstream.reports.org import build_org
from compstream.reports.period import parse_period
from compstream.reports.render_html import render_html
from compstream.reports.statement import build_statement
from compstream.worker.processor import LedgerProcessor, SourceMessage, partition_of
from compstream.worker.sink import HistorySink

from .scenario import GRANTS, PARTITIONS, USAGE, _order, t

DATABASE = "finality"
LATENESS = timedelta(hours=6)
ADA, CY = "fin-ada", "fin-cy"  # on different source partitions (checked below)
G = 10**9


def _usage(event_id: str, engineer: str, at: datetime, cost_nanos: int) -> Usage:
    return Usage(event_id, engineer, "openai", "gpt-4o", at, 10_000, 1_000, 0, 0, cost_nanos)


def _batches() -> list[list]:
    ada = [GrantIssued("fa-g0", ADA, "fa-g0", 20 * G, t(9, 1), t(10, 5), "allowance"),
           _usage("fa-sep", ADA, t(9, 10), 3 * G),
           GrantIssued("fa-g1", ADA, "fa-g1", 100 * G, t(10, 1), t(10, 31, 15), "allowance")]
    ada += [_usage(f"fa-u{d}", ADA, t(10, d, 10), d * G // 10) for d in range(6, 32)]
    # 12:00 is exactly final_through: pending (final means strictly before).
    ada += [_usage(f"fa-end{h}", ADA, t(10, 31, h), G + h) for h in (12, 16, 18)]
    cy = [GrantIssued("fc-g", CY, "fc-g", 50 * G, t(10, 1), t(11, 15), "allowance"),
          GrantIssued("fc-g2", CY, "fc-g2", 10 * G, t(10, 1), t(10, 25), "bonus")]
    cy += [_usage(f"fc-u{d}", CY, t(10, d, 9), G // 5 + d) for d in range(2, 21)]
    cut = t(10, 26)
    first = [e for e in ada + cy if e.event_time < cut]
    # Arrives after its day is final: applied late, listed apart.
    late = _usage("fa-late", ADA, t(10, 10, 5), 2 * G)
    return [first, [late] + [e for e in ada + cy if e.event_time >= cut]]


def _feed(store, batches: list[list]) -> dict[str, dict]:
    """Stream the batches (one processor batch each); returns each engineer's
    last balance record as the balance topic would carry it."""
    books: dict[str, bytes] = {}
    processor = LedgerProcessor(int(LATENESS.total_seconds()), load_book=books.get, partitions=PARTITIONS)
    sink = HistorySink(store)
    offsets: dict[tuple[str, int], int] = {}
    balances: dict[str, dict] = {}
    n = 0
    for b, evs in enumerate(batches):
        messages = []
        for event in sorted(evs, key=_order):
            topic = USAGE if event.type == "usage" else GRANTS
            partition = partition_of(event.engineer_id, PARTITIONS)
            offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
            n += 1
            messages.append(SourceMessage(topic, partition, offset, event.engineer_id.encode(),
                                          encode_event(event), t(12, 1) + timedelta(milliseconds=n)))
        result = processor.process(messages, keys=lambda: list(books), sweep=True)
        sink.write_all(result.history, f"fin:{b}")
        books.update({eng: data for eng, (data, _p) in result.books.items()})
        for eng, data in result.balances:
            name, record = decode_record(data)
            assert name == "BalanceUpdate"
            balances[eng] = record
    return balances


@pytest.fixture(scope="module")
def fin(report_history):
    dsn, _ = report_history
    store = open_history(dsn, database=DATABASE)
    store.migrate()
    batches = _batches()
    balances = _feed(store, batches)
    yield store, dsn, [e for b in batches for e in b], batches, balances
    store.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    store.close()


def _final_through(fed: list, engineer: str) -> datetime:
    """Independent: max usage time on the engineer's partition, minus lateness."""
    p = partition_of(engineer, PARTITIONS)
    return max(e.event_time for e in fed if e.type == "usage" and partition_of(e.engineer_id, PARTITIONS) == p) \
        - LATENESS


def _pending_usage(fed: list, engineer: str, period_text: str) -> list:
    period, through = parse_period(period_text), _final_through(fed, engineer)
    return [e for e in fed if e.type == "usage" and e.engineer_id == engineer
            and period.start <= e.event_time < period.end and e.event_time >= through]


def _open_as_of(fed: list, engineer: str, grant: GrantIssued) -> int:
    # Each engineer's usage here draws on this one grant only (the other is
    # expired, or expires later and is drawn second and never reached).
    through = _final_through(fed, engineer)
    used = sum(e.cost_nanos for e in fed if e.type == "usage" and e.engineer_id == engineer
               and grant.event_time <= e.event_time < through)
    return grant.amount_nanos - used


def test_partitions_differ():
    assert partition_of(ADA, PARTITIONS) != partition_of(CY, PARTITIONS)


def test_half_final_period(fin):
    store, _dsn, fed, _b, _bal = fin
    doc = build_statement(store, ADA, "2026-10")
    f = doc["finality"]
    through = _final_through(fed, ADA)
    assert through == t(10, 31, 12)  # the design: Oct 31 18:00 usage minus 6 h
    assert f["final_through"] == through.isoformat(timespec="microseconds")[:-6] + "Z"
    assert f["is_final"] is False
    pending = _pending_usage(fed, ADA, "2026-10")
    assert len(pending) == 3
    assert f["pending_usage"] == {"usage_events": len(pending), "cost_nanos": sum(e.cost_nanos for e in pending)}
    g1 = next(e for e in fed if e.type == "grant_issued" and e.grant_id == "fa-g1")
    assert [(x["grant_id"], x["open_nanos"]) for x in f["pending_expiries"]] == [("fa-g1", _open_as_of(fed, ADA, g1))]
    assert f["pending_expiries"][0]["expires_at"].startswith("2026-10-31T15:00:00")
    assert f["pending_expiries_total"] == {"lots": 1, "open_nanos": f["pending_expiries"][0]["open_nanos"]}
    # Final amounts are the posting-based period totals; fa-g0 expired (final) in the period.
    assert f["final"]["usage_cost_nanos"] == doc["period_totals"]["usage_cost_nanos"]
    assert doc["period_totals"]["expired_nanos"] == 17 * G
    final_usage = [e for e in fed if e.type == "usage" and e.engineer_id == ADA
                   and t(10, 1) <= e.event_time < through]
    assert f["final"]["usage_cost_nanos"] == sum(e.cost_nanos for e in final_usage)


def test_final_plus_pending_equals_the_balance_topic(fin):
    store, _dsn, fed, _b, balances = fin
    # cy: all usage in October; ada: September + October.
    for engineer, periods in ((CY, ("2026-10",)), (ADA, ("2026-09", "2026-10"))):
        docs = [build_statement(store, engineer, p) for p in periods]
        record = balances[engineer]
        # The same instant: the balance was published under the watermark the report calls final.
        assert record["watermark"] == _final_through(fed, engineer)
        assert docs[-1]["finality"]["final_through"] == record["watermark"].isoformat(
            timespec="microseconds")[:-6] + "Z"
        total = sum(d["finality"]["final"]["usage_cost_nanos"] + d["finality"]["pending_usage"]["cost_nanos"]
                    for d in docs)
        assert total == record["usage_cost_nanos"], engineer
        assert total == sum(e.cost_nanos for e in fed if e.type == "usage" and e.engineer_id == engineer)
    cy = build_statement(store, CY, "2026-10")["finality"]
    assert cy["pending_usage"]["usage_events"] == len(_pending_usage(fed, CY, "2026-10")) == 1


def test_fully_final_period(fin):
    store, _dsn, fed, _b, _bal = fin
    doc = build_statement(store, ADA, "2026-09")
    f = doc["finality"]
    assert f["is_final"] is True and _final_through(fed, ADA) >= parse_period("2026-09").end
    assert f["pending_usage"] == {"usage_events": 0, "cost_nanos": 0}
    assert f["pending_expiries"] == [] and f["pending_expiries_total"] == {"lots": 0, "open_nanos": 0}
    assert f["final"]["usage_cost_nanos"] == 3 * G
    assert doc["late_adjustments"] == []
    assert finality_text(f) == "final through 2026-10-31T12:00Z (period final)"


def test_late_events_listed(fin):
    store, _dsn, fed, batches, _bal = fin
    doc = build_statement(store, ADA, "2026-10")
    late = next(e for e in fed if e.event_id == "fa-late")
    # Ada's book watermark when it arrived: batch 1's last usage on her partition minus lateness.
    p = partition_of(ADA, PARTITIONS)
    applied = max(e.event_time for e in batches[0]
                  if e.type == "usage" and partition_of(e.engineer_id, PARTITIONS) == p) - LATENESS
    assert late.event_time < applied
    assert [(x["event_id"], x["type"], x["cost_nanos"], x["applied_watermark"]) for x in doc["late_adjustments"]] \
        == [("fa-late", "usage", late.cost_nanos, applied.isoformat(timespec="microseconds")[:-6] + "Z")]
    assert doc["late_adjustments"][0]["event_time"].startswith("2026-10-10T05:00:00")
    assert build_statement(store, CY, "2026-10")["late_adjustments"] == []


def test_org_finality_is_the_minimum_over_partitions(fin):
    store, _dsn, fed, _b, _bal = fin
    doc = build_org(store, "2026-10")
    f = doc["finality"]
    marks = {partition_of(eng, PARTITIONS): _final_through(fed, eng) for eng in (ADA, CY)}
    assert {p["partition"]: p["final_through"] for p in f["partitions"]} == {
        p: m.isoformat(timespec="microseconds")[:-6] + "Z" for p, m in marks.items()}
    assert f["final_through"] == min(marks.values()).isoformat(timespec="microseconds")[:-6] + "Z"
    assert f["is_final"] is False
    pending = _pending_usage(fed, ADA, "2026-10") + _pending_usage(fed, CY, "2026-10")
    assert f["pending_usage"] == {"usage_events": len(pending), "cost_nanos": sum(e.cost_nanos for e in pending)}
    grants = {e.grant_id: e for e in fed if e.type == "grant_issued"}
    want_open = _open_as_of(fed, ADA, grants["fa-g1"]) + _open_as_of(fed, CY, grants["fc-g2"])
    assert f["pending_expiries_total"] == {"lots": 2, "open_nanos": want_open}
    assert "pending_expiries" not in f  # the org report names no one's grants
    assert doc["totals"]["late_events"] == 1 and doc["totals"]["late_cost_nanos"] == 2 * G
    assert f["final"]["usage_cost_nanos"] == doc["totals"]["usage_cost_nanos"]


def test_csv_html_and_cli_carry_finality(fin, tmp_path):
    store, dsn, fed, _b, _bal = fin
    doc = build_statement(store, ADA, "2026-10")
    rows = {r["path"]: r["value"] for r in csv.DictReader(io.StringIO(to_csv(doc)))}
    assert rows["finality.is_final"] == "false"
    assert rows["finality.pending_usage.usage_events"] == "3"
    assert rows["late_adjustments[fa-late].applied_watermark"] == doc["late_adjustments"][0]["applied_watermark"]
    html = render_html(doc)
    assert "<h2>Finality</h2>" in html and "<h2>Late adjustments</h2>" in html
    assert 'data-path="finality.pending_usage.usage_events" data-value="3"' in html
    assert 'data-path="finality.pending_expiries[fa-g1].open_nanos"' in html
    assert "Final through <b>2026-10-31T12:00Z</b>" in html
    org_html = render_html(build_org(store, "2026-10"))
    assert 'data-path="finality.partitions[p0].pending_usage_events"' in org_html

    pending = _pending_usage(fed, ADA, "2026-10")
    want = (f"finality: final through 2026-10-31T12:00Z (period not final: {len(pending)} usage events, "
            f"{usd(sum(e.cost_nanos for e in pending))} pending; 1 expiry pending)")
    result = CliRunner().invoke(app, ["report", "statement", "--engineer", ADA, "--period", "2026-10", "--dsn", dsn,
                                      "--database", DATABASE, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert want in result.output
    result = CliRunner().invoke(app, ["report", "org", "--period", "2026-09", "--dsn", dsn,
                                      "--database", DATABASE, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # September: only ada (her partition) had activity.
    assert "finality: final through 2026-10-31T12:00Z (period final)" in result.output


def test_an_event_with_a_posting_is_final_not_pending(report_history):
    """A sweep cut short (SWEEP_ROWS_MAX) may write an event's postings beyond
    the recorded watermark: it is then final, never counted twice."""
    from compstream.history.rows import HistoryBatch, PostingRow

    dsn, _ = report_history
    store = open_history(dsn, database="finality_cut")
    try:
        store.migrate()
        batches = _batches()
        _feed(store, batches)
        before = build_statement(store, ADA, "2026-10")["finality"]
        event = next(e for b in batches for e in b if e.event_id == "fa-end16")
        head = store.query_rows(f"SELECT max(seq), argMax(hash, seq) FROM finality_cut.postings FINAL "
                                f"WHERE engineer_id = '{ADA}'")[0]
        store.append_batch(HistoryBatch(postings=(PostingRow(
            ADA, int(head[0]) + 1, "consume", "fa-g1", event.cost_nanos, event.event_id, event.event_time,
            0, str(head[1]), "x" * 64),)), "cut:1")
        after = build_statement(store, ADA, "2026-10")["finality"]
        assert after["pending_usage"] == {"usage_events": before["pending_usage"]["usage_events"] - 1,
                                          "cost_nanos": before["pending_usage"]["cost_nanos"] - event.cost_nanos}
        assert after["final"]["usage_cost_nanos"] == before["final"]["usage_cost_nanos"] + event.cost_nanos
    finally:
        store.command("DROP DATABASE IF EXISTS finality_cut")
        store.close()
