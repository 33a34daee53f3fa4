"""The bodies of the two report pages, built only from the report document."""

from __future__ import annotations

from html import escape

from compstream.reports.charts import COLORS, Bar, Segment, columns, hbars, stacked
from compstream.reports.finality import short_time
from compstream.reports.html_parts import card, cell, num, table
from compstream.reports.money import tokens, usd

_N = True  # numeric column


def _section(title: str, *parts: str, note: str = "") -> str:
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return f"<section><h2>{escape(title)}</h2>{extra}{''.join(parts)}</section>"


def _lot_chart(doc: dict) -> str:
    rows = []
    for lot in doc["lots"]:
        base = f"lots[{lot['id']}]"
        rows.append((lot["grant_id"], [
            Segment("used earlier", lot["consumed_before_nanos"], f"{base}.consumed_before_nanos",
                    COLORS["consumed_before"]),
            Segment("used this month", lot["consumed_in_period_nanos"], f"{base}.consumed_in_period_nanos",
                    COLORS["consumed"]),
            Segment("expired", lot["expired_nanos"], f"{base}.expired_nanos", COLORS["expired"]),
            Segment("revoked", lot["revoked_nanos"], f"{base}.revoked_nanos", COLORS["revoked"]),
            Segment("forfeited", lot["forfeited_nanos"], f"{base}.forfeited_nanos", COLORS["forfeited"]),
            Segment("remaining", lot["remaining_end_nanos"], f"{base}.remaining_end_nanos", COLORS["remaining"]),
        ]))
    if doc["period_totals"]["overdraft_nanos"]:
        rows.append(("overdraft", [Segment("overdraft (used beyond grants)", doc["period_totals"]["overdraft_nanos"],
                                           "period_totals.overdraft_nanos", COLORS["overdraft"])]))
    return stacked("Each grant: granted vs used, expired, revoked, forfeited, remaining", rows, usd)


_SUMMARY = (
    ("Granted", "issued_nanos"), ("Used from grants", "consumed_nanos"), ("Overdraft", "overdraft_nanos"),
    ("Usage value (grants + overdraft)", "usage_cost_nanos"), ("Expired unused", "expired_nanos"),
    ("Revoked", "revoked_nanos"), ("Forfeited", "forfeited_nanos"),
    ("Refunds not applicable", "refund_unapplied_nanos"), ("Calls at list price", "priced_cost_nanos"),
)
_TOKENS = (("Input tokens", "input_tokens"), ("Output tokens", "output_tokens"),
           ("Cache-read tokens", "cache_read_tokens"), ("Cache-write tokens", "cache_write_tokens"),
           ("All tokens", "tokens"), ("Usage events", "usage_events"), ("Unpriced events", "unpriced_events"))


def _span(doc: dict, path: str, fmt: str = "int") -> str:
    return num(doc, path, fmt, tag="span")


def finality_box(doc: dict) -> str:
    """'final through <time>; N usage events ($x) pending; M expiries pending', per partition below."""
    f = doc["finality"]
    through = short_time(f["final_through"]) if f["final_through"] else "nothing yet"
    line = (f"<p>Final through <b>{escape(through)}</b>; "
            f"{_span(doc, 'finality.pending_usage.usage_events')} usage events "
            f"({_span(doc, 'finality.pending_usage.cost_nanos', 'usd')}) pending; "
            f"{_span(doc, 'finality.pending_expiries_total.lots')} expiries pending "
            f"({_span(doc, 'finality.pending_expiries_total.open_nanos', 'usd')} still open).</p>")
    if doc["report"] == "org":
        line += (f"<p>{_span(doc, 'totals.late_events')} late adjustments "
                 f"({_span(doc, 'totals.late_cost_nanos', 'usd')} usage) are inside the totals.</p>")
    parts = [line]
    if f["partitions"] and doc["report"] == "org":
        parts.append(table([("Partition", False), ("Final through", False), ("Pending usage", _N),
                            ("Pending value", _N), ("Pending expiries", _N)], [
            [cell(p["partition"]), cell(short_time(p["final_through"]))]
            + [num(doc, f"finality.partitions[{p['id']}].{k}", fmt) for k, fmt in (
                ("pending_usage_events", "int"), ("pending_usage_cost_nanos", "usd"), ("pending_expiry_lots", "int"))]
            for p in f["partitions"]]))
    lots = f.get("pending_expiries") or []
    if lots:
        parts.append(table([("Grant", False), ("Expires", False), ("Open as of final through", _N)], [
            [cell(lot["grant_id"], mono=True), cell(short_time(lot["expires_at"])),
             num(doc, f"finality.pending_expiries[{lot['id']}].open_nanos")] for lot in lots]))
    note = ("Every amount in this report is final." if f["is_final"] else
            "Not final yet: the amounts are final postings only; pending usage and expiries are applied to the "
            "live balance but not yet final (docs/reports.md, Finality).")
    return _section("Finality", *parts, note=note)


def _late_section(doc: dict) -> str:
    rows = [[cell(e["event_id"], mono=True), cell(e["type"]), cell(short_time(e["event_time"])),
             cell(short_time(e["applied_watermark"])),
             num(doc, f"late_adjustments[{e['id']}].cost_nanos"), num(doc, f"late_adjustments[{e['id']}].amount_nanos")]
            for e in doc["late_adjustments"]]
    return _section("Late adjustments", table(
        [("Event", False), ("Type", False), ("Event time", False), ("Applied after final through", False),
         ("Cost", _N), ("Amount", _N)], rows, empty="No late events in this period."),
        note="Events that arrived after their time was final: applied on top of the final state, "
             "inside the amounts above.")


def _policy_rule(lot: dict) -> str:
    """`rule (policy@version)` for a policy grant, else a dash."""
    return f"{lot['policy_rule']} ({lot['policy']})" if lot.get("policy") else "–"


def _usage_rows(doc: dict, key: str, label_fields: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for item in doc[key]:
        base = f"{key}[{item['id']}]"
        rows.append([cell(" / ".join(item[f] for f in label_fields))] + [
            num(doc, f"{base}.{f}", fmt) for f, fmt in (
                ("usage_events", "int"), ("input_tokens", "int"), ("output_tokens", "int"),
                ("cache_read_tokens", "int"), ("cache_write_tokens", "int"), ("tokens", "int"),
                ("priced_cost_nanos", "usd"), ("unpriced_events", "int"))])
    return rows


_USAGE_HEAD = [("Calls", _N), ("Input", _N), ("Output", _N), ("Cache read", _N), ("Cache write", _N),
               ("Tokens", _N), ("Value", _N), ("Unpriced", _N)]


def statement_body(doc: dict) -> str:
    cards = [card(doc, "Granted this month", "period_totals.issued_nanos"),
             card(doc, "Used this month", "period_totals.usage_cost_nanos"),
             card(doc, "Expired unused", "period_totals.expired_nanos"),
             card(doc, "Available at month end", "to_date.available_nanos"),
             card(doc, "Tokens this month", "period_totals.tokens", "int")]
    if doc["cash"] and doc["cash"]["used_share_ppm"] is not None:
        cards.append(card(doc, "Used ÷ monthly cash pay", "cash.used_share_ppm", "ppm"))
    summary = [[cell(label), num(doc, f"period_totals.{f}"), num(doc, f"to_date.{f}")] for label, f in _SUMMARY]
    summary += [[cell("Remaining in open grants"), cell(""), num(doc, "to_date.remaining_nanos")],
                [cell("Available (remaining − overdraft)"), cell(""), num(doc, "to_date.available_nanos")]]
    summary += [[cell(label), num(doc, f"period_totals.{f}", "int"), num(doc, f"to_date.{f}", "int")]
                for label, f in _TOKENS]
    model_bars = [Bar(m["id"], m["priced_cost_nanos"], f"usage_by_model[{m['id']}].priced_cost_nanos")
                  for m in doc["usage_by_model"]]
    lots = [[cell(lot["grant_id"], mono=True), cell(lot["grant_kind"]), cell(_policy_rule(lot)),
             cell((lot["issued_at"] or "")[:10]),
             cell((lot["expires_at"] or "never")[:10]), cell(lot["status"])]
            + [num(doc, f"lots[{lot['id']}].{f}") for f in (
                "issued_nanos", "consumed_before_nanos", "consumed_in_period_nanos", "expired_nanos",
                "revoked_nanos", "forfeited_nanos", "remaining_end_nanos")] for lot in doc["lots"]]
    kinds = [[cell(k["grant_kind"]), num(doc, f"granted_by_kind[{k['id']}].grants", "int"),
              num(doc, f"granted_by_kind[{k['id']}].amount_nanos")] for k in doc["granted_by_kind"]]
    parts = [f'<div class="cards">{"".join(cards)}</div>', finality_box(doc),
             _section("Usage by model", hbars("Usage value by model", model_bars, usd),
                      note="Value = list price of each call; unpriced calls cost nothing and are counted."),
             _section("Where the granted compute went", _lot_chart(doc)),
             _section("Summary", table([("", False), ("This month", _N), ("To date, at month end", _N)], summary)),
             _section("Granted by kind", table([("Kind", False), ("Grants", _N), ("Amount", _N)], kinds)),
             _section("Usage detail by model", table([("Provider / model", False)] + _USAGE_HEAD,
                                                     _usage_rows(doc, "usage_by_model", ("provider", "model")))),
             _section("Usage by provider", table([("Provider", False)] + _USAGE_HEAD,
                                                 _usage_rows(doc, "usage_by_provider", ("provider",)))),
             _section("Grants, lot by lot", table(
                 [("Grant", False), ("Kind", False), ("Policy / rule", False), ("Issued", False),
                  ("Expires", False), ("Status", False),
                  ("Issued", _N), ("Used before", _N), ("Used this month", _N), ("Expired", _N),
                  ("Revoked", _N), ("Forfeited", _N), ("Remaining", _N)], lots))]
    parts.append(_late_section(doc))
    parts.append(_cash_section(doc))
    parts.append(_digest_section(doc))
    return "\n".join(parts)


def _cash_section(doc: dict) -> str:
    cash = doc["cash"]
    if not cash:
        return _section("Compute as a share of cash pay", note="HR has supplied no cash compensation for this period.")
    effective = (cash["effective_at"] or "")[:10]
    rows = [[cell("Annual cash pay (effective " + effective + ")"), num(doc, "cash.annual_cash_nanos")],
            [cell("Monthly cash pay (annual ÷ 12)"), num(doc, "cash.monthly_cash_nanos")],
            [cell("Granted this month ÷ monthly cash"), num(doc, "cash.granted_share_ppm", "ppm")],
            [cell("Used this month ÷ monthly cash"), num(doc, "cash.used_share_ppm", "ppm")]]
    return _section("Compute as a share of cash pay", table([("", False), ("", _N)], rows),
                    note="Integer arithmetic; shares are truncated to 0.01%.")


def _digest_section(doc: dict) -> str:
    d = doc["digest"]
    stored = {None: "no digest published for this period yet", True: "matches every stored digest",
              False: "DIFFERS from a stored digest – run `compstream audit verify`"}[d["matches_stored"]]
    rows = [[cell("Period digest (SHA-256)"), cell(d["digest"], mono=True)],
            [cell("Engineers / postings covered"), cell(f"{d['engineers']} / {d['postings']}")],
            [cell("Your chain head at month end"),
             cell(f"seq {d['engineer_head_seq']} · {d['engineer_head_hash'] or '–'}", mono=True)],
            [cell("Stored digests"), cell(f"{d['stored_digests']}: {stored}")]]
    return _section("Tamper evidence", table([("", False), ("", False)], rows),
                    note="Recompute with the SQL in docs/auditing.md; your head line is in the hashed text.")


def org_body(doc: dict) -> str:
    t = doc["totals"]
    cards = [card(doc, "Engineers", "totals.engineers", "int"), card(doc, "Granted", "totals.issued_nanos"),
             card(doc, "Used", "totals.usage_cost_nanos"),
             card(doc, "Utilisation (used ÷ granted)", "totals.utilisation_ppm", "ppm"),
             card(doc, "Breakage (expired unused)", "totals.expired_nanos"),
             card(doc, "Breakage ÷ granted", "totals.breakage_ppm", "ppm")]
    flow = stacked("Granted vs used, expired, revoked, forfeited", [
        ("Granted", [Segment("granted", t["issued_nanos"], "totals.issued_nanos", COLORS["granted"])]),
        ("Outcomes", [Segment("used", t["consumed_nanos"], "totals.consumed_nanos", COLORS["consumed"]),
                      Segment("overdraft", t["overdraft_nanos"], "totals.overdraft_nanos", COLORS["overdraft"]),
                      Segment("expired", t["expired_nanos"], "totals.expired_nanos", COLORS["expired"]),
                      Segment("revoked", t["revoked_nanos"], "totals.revoked_nanos", COLORS["revoked"]),
                      Segment("forfeited", t["forfeited_nanos"], "totals.forfeited_nanos", COLORS["forfeited"])]),
    ], usd)
    hist = doc["distribution"]["usage_cost_histogram"]
    places = 0 if hist["width_nanos"] % 10**9 == 0 else 2
    bins = [Bar(f"{usd(b['lo_nanos'], places)}–{usd(b['hi_nanos'], places)}", b["engineers"],
                f"distribution.usage_cost_histogram.bins[{b['id']}].engineers") for b in hist["bins"]]
    dist = doc["distribution"]
    quant = [[cell(label)] + [num(doc, f"distribution.{key}.{p}", fmt) for p in ("p50", "p90", "p99")]
             + [cell(dist[gini]["decimal"] if gini else "")]
             for label, key, fmt, gini in (("Granted per engineer", "issued_nanos", "usd", "gini_issued"),
                                           ("Used per engineer", "usage_cost_nanos", "usd", "gini_usage_cost"),
                                           ("Tokens per engineer", "tokens", "int", None))]
    model_bars = [Bar(m["id"], m["priced_cost_nanos"], f"top_models[{m['id']}].priced_cost_nanos")
                  for m in doc["top_models"]]
    usage_cols = (("usage_events", "int"), ("engineers", "int"), ("tokens", "int"), ("priced_cost_nanos", "usd"),
                  ("unpriced_events", "int"))
    providers = [[cell(p["provider"])] + [num(doc, f"top_providers[{p['id']}].{f}", fmt) for f, fmt in usage_cols]
                 for p in doc["top_providers"]]
    teams = doc["teams"]
    team_rows = [[cell(tm["team"])] + [num(doc, f"teams.teams[{tm['id']}].{f}", fmt) for f, fmt in (
        ("engineers", "int"), ("issued_nanos", "usd"), ("usage_cost_nanos", "usd"), ("usage_cost_p50_nanos", "usd"),
        ("utilisation_ppm", "ppm"), ("expired_nanos", "usd"), ("tokens", "int"))] for tm in teams["teams"]]
    team_bars = [Bar(tm["team"], tm["usage_cost_nanos"], f"teams.teams[{tm['id']}].usage_cost_nanos")
                 for tm in teams["teams"]]
    people = [[cell(e["rank"]), cell(e["engineer_id"] or "(opted out)")]
              + [num(doc, f"engineers[{e['id']}].{f}", fmt) for f, fmt in (
                  ("issued_nanos", "usd"), ("usage_cost_nanos", "usd"), ("expired_nanos", "usd"), ("tokens", "int"))]
              for e in doc["engineers"]]
    digests = [[cell(d["period"]), cell(d["digest"], mono=True), cell(d["engineers"])] for d in doc["digests"]]
    hidden = (f"Teams with fewer than {teams['size_min']} engineers are not shown "
              f"({teams['hidden_teams']} team(s), {teams['hidden_engineers']} engineer(s) withheld).")
    return "\n".join([
        f'<div class="cards">{"".join(cards)}</div>', finality_box(doc),
        _section("Where granted compute went", flow),
        _section("How usage is spread across engineers", columns("Engineers by usage value", bins, tokens),
                 table([("", False), ("p50", _N), ("p90", _N), ("p99", _N), ("Gini", _N)], quant),
                 note="Quantiles are exact (ClickHouse quantileExact); "
                      "Gini is computed exactly from per-engineer totals."),
        _section("Top models", hbars("Usage value by model", model_bars, usd),
                 table([("Provider", False)] + [(h, _N) for h in ("Calls", "Engineers", "Tokens", "Value", "Unpriced")],
                       providers)),
        _section("Teams", hbars("Usage value by team", team_bars, usd),
                 table([("Team", False)] + [(h, _N) for h in ("Engineers", "Granted", "Used", "Median used",
                                                              "Utilisation", "Expired", "Tokens")], team_rows),
                 note=hidden),
        _section("Engineers", table([("#", False), ("Engineer", False), ("Granted", _N), ("Used", _N),
                                     ("Expired", _N), ("Tokens", _N)], people),
                 note=f"{doc['opted_out_engineers']} engineer(s) opted out of being named; they count in every total."),
        _section("Period digests", table([("Month", False), ("Digest (SHA-256)", False), ("Engineers", _N)], digests)),
    ])
