"""HR exports: every row validated, errors with file and line, deterministic ids."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from compstream.hr.intake import Known, check_references, parse_file

CSV = """type,engineer_id,effective_at,grant_id,amount_usd,expires_at,kind,team_id,opted_out,annual_cash_usd
grant_issued,ann,2026-12-01,g-1,100,2027-03-01,signing,,,
team_assigned,ann,2026-12-01T09:00:00Z,,,,,core,,
cash_compensation,ann,2026-12-01,,,,,,,180000
leaderboard_privacy,ann,2026-12-02,,,,,,yes,
grant_revoked,ann,2026-12-20,g-1,,,,,,
engineer_offboarded,ann,2026-12-31,,,,,,,
"""


def test_every_type_parses_from_csv_with_exact_amounts():
    result = parse_file(CSV, "hr.csv")
    assert result.accepted, result.errors
    by_type = {r.event.type: r.event for r in result.rows}
    assert set(by_type) == {"grant_issued", "team_assigned", "cash_compensation", "leaderboard_privacy",
                            "grant_revoked", "engineer_offboarded"}
    assert by_type["grant_issued"].amount_nanos == 100 * 10**9
    assert by_type["grant_issued"].kind == "signing"
    assert by_type["cash_compensation"].annual_cash_nanos == 180_000 * 10**9
    assert by_type["leaderboard_privacy"].opted_out is True
    assert [r.line for r in result.rows] == [2, 3, 4, 5, 6, 7]
    check_references(result, Known())
    assert result.accepted  # the revocation names a grant issued earlier in the file


def test_jsonl_gives_the_same_events_and_ids_as_csv():
    rows = [{"type": "grant_issued", "engineer_id": "ann", "effective_at": "2026-12-01", "grant_id": "g-1",
             "amount_usd": "100", "expires_at": "2027-03-01", "kind": "signing"},
            {"type": "team_assigned", "engineer_id": "ann", "effective_at": "2026-12-01T09:00:00Z", "team_id": "core"}]
    jsonl = parse_file("\n".join(json.dumps(r) for r in rows) + "\n", "hr.jsonl")
    csv_events = [r.event for r in parse_file(CSV, "hr.csv").rows[:2]]
    assert [r.event for r in jsonl.rows] == csv_events


def test_bad_rows_name_file_and_line_and_reject_the_file():
    text = CSV.replace("grant_issued,ann,2026-12-01,g-1,100,", "grant_issued,ann,2026-12-01,g-1,-100,") \
              .replace("team_assigned,ann,2026-12-01T09:00:00Z,,,,,core", "team_assigned,ann,yesterday,,,,,core") \
              .replace("leaderboard_privacy,ann,2026-12-02,,,,,,yes", "leaderboard_privacy,ann,2026-12-02,g-9,,,,,yes")
    result = parse_file(text, "bad.csv")
    assert not result.accepted
    got = [str(e) for e in result.errors]
    assert got[0].startswith("bad.csv:2: amount:") and "> 0" in got[0]
    assert got[1].startswith("bad.csv:3: effective_at:")
    assert got[2].startswith("bad.csv:5: grant_id: is not a field of leaderboard_privacy")


def test_unknown_columns_and_types_are_refused():
    assert "unknown column(s) amount" in str(parse_file("type,engineer_id,effective_at,amount\n", "x.csv").errors[0])
    result = parse_file('{"type": "promotion", "engineer_id": "ann", "effective_at": "2026-12-01"}\n', "x.jsonl")
    assert str(result.errors[0]).startswith("x.jsonl:1: type: unknown type 'promotion'")
    result = parse_file('{"type": "grant_issued", "engineer_id": "ann", "effective_at": "2026-12-01", '
                        '"grant_id": "pol:eng:2026-12:base:0123456789abcdef", "amount_usd": "5"}\n', "x.jsonl")
    assert "reserved for policy grants" in str(result.errors[0])
    result = parse_file('{"type": "team_assigned", "engineer_id": "ann"}\nnot json\n', "x.jsonl")
    assert [e.line for e in result.errors] == [1, 2]


def test_references_need_a_known_engineer_and_grant():
    text = ("type,engineer_id,effective_at,grant_id\n"
            "grant_revoked,ann,2026-12-20,g-404\n"
            "engineer_offboarded,zed,2026-12-31,\n")
    result = parse_file(text, "refs.csv")
    assert result.accepted
    known = Known({"ann"})
    check_references(result, known)
    assert [str(e) for e in result.errors] == [
        "refs.csv:2: grant_id: 'g-404' was never issued to 'ann' (not in the history nor earlier in the import)",
        "refs.csv:3: engineer_id: 'zed' is unknown (not on the roster, not in the history, not earlier in the import)",
    ]
    assert known.engineers == {"ann"}  # a rejected file teaches nothing


def test_duplicate_rows_collapse_and_conflicting_ids_are_errors():
    row = "team_assigned,ann,2026-12-01,,,,,core,,\n"
    result = parse_file(CSV.splitlines()[0] + "\n" + row + row, "dup.csv")
    assert result.accepted and len(result.rows) == 1 and result.duplicates == 1
    text = ('{"type":"team_assigned","engineer_id":"ann","effective_at":"2026-12-01","team_id":"a","event_id":"x"}\n'
            '{"type":"team_assigned","engineer_id":"ann","effective_at":"2026-12-01","team_id":"b","event_id":"x"}\n')
    assert "also on line 1" in str(parse_file(text, "c.jsonl").errors[0])


@given(team=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters=',"',
                                  exclude_categories=("Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=20),
       day=st.integers(1, 28))
def test_ids_depend_on_content_only(team, day):
    row = f"team_assigned,ann,2026-12-{day:02d},,,,,{team},,\n"
    header = CSV.splitlines()[0] + "\n"
    a = parse_file(header + row, "a.csv")
    b = parse_file(header + "\n" + row, "b.csv")  # other file, other line
    other = parse_file(header + row.replace("ann", "bob"), "a.csv")
    assert a.accepted, a.errors
    assert a.rows[0].event.event_id == b.rows[0].event.event_id != other.rows[0].event.event_id


def test_files_in_order_a_later_file_may_revoke_an_earlier_files_grant_but_not_a_rejected_ones():
    from compstream.hr.history import Prior
    from compstream.hr.runs import import_texts

    head = "type,engineer_id,effective_at,grant_id,amount_usd\n"
    grant = head + "grant_issued,ann,2026-12-01,g-1,10\n"
    bad_grant = head + "grant_issued,bob,2026-12-01,g-2,10\ngrant_issued,bob,2026-12-01,g-3,oops\n"
    revokes = head + "grant_revoked,ann,2026-12-05,g-1,\n"
    revokes_bad = head + "grant_revoked,bob,2026-12-05,g-2,\n"
    done = import_texts([("1.csv", grant), ("2.csv", bad_grant), ("3.csv", revokes), ("4.csv", revokes_bad)],
                        Prior())
    assert [r.accepted for r in done.results] == [True, False, True, False]
    assert [(e.type, e.engineer_id) for e in done.new] == [("grant_issued", "ann"), ("grant_revoked", "ann")]
    again = import_texts([("1.csv", grant)], Prior(events=done.new))
    assert again.new == [] and again.accepted_rows == 1
