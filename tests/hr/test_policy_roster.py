"""Policy and roster files: what is accepted, and errors that name the place."""

from __future__ import annotations

import pytest

from compstream.hr.money import AmountError, usd_to_nanos
from compstream.hr.policy import PolicyError, parse_policy
from compstream.hr.roster import RosterError, parse_roster

from .hr_support import USD, day, policies, policy_text, rule


def test_example_policy_and_roster_load():
    from pathlib import Path

    from compstream.hr.policy import load_policy
    from compstream.hr.roster import load_roster

    root = Path(__file__).resolve().parents[2] / "examples"
    p = load_policy(root / "policy.toml")
    assert p.label == "eng@1" and {r.name for r in p.rules} >= {"base", "senior"}
    assert {r.engineer for r in load_roster(root / "roster.csv")} >= {"ada", "hedy", "linus"}


@pytest.mark.parametrize("text, where", [
    (policy_text(rules=rule("base", "10.0000000001")), "more precise than a nano"),
    (policy_text(rules=rule("base", "-5")), "must be > 0"),
    (policy_text(rules=rule("base", "10", expires="60d", cap="5")), "rollover cap needs expires"),
    (policy_text(rules=rule("base", "10", expires="soon")), "expires"),
    (policy_text(rules=rule("Base", "10")), "name"),
    (policy_text(rules=rule("a-very-long-rule-name-indeed", "10")), "at most 20"),
    (policy_text(rules=rule("base", "10") + rule("base", "20")), "used twice"),
    (policy_text(rules=rule("base", "10", period="week")), "period must be"),
    (policy_text(rules=rule("base", "10") + "colour = 'red'\n"), "unknown key"),
    (policy_text(version=0), "version"),
    ('[policy]\nname = "eng"\nversion = 1\n', "effective_from"),
    ("not toml [", "not valid TOML"),
])
def test_bad_policies_are_refused_with_the_place(text, where):
    with pytest.raises(PolicyError, match=where) as info:
        parse_policy(text, "p.toml")
    assert str(info.value).startswith("p.toml")


def test_versions_pick_the_one_in_force_and_must_agree():
    pols = policies(policy_text(rules=rule("base", "10")),
                    policy_text(version=2, effective_from="2026-11-15", rules=rule("base", "20")))
    assert pols.in_force(day("2026-11-14")).version == 1
    assert pols.in_force(day("2026-11-15")).version == 2
    assert pols.in_force(day("2025-12-31")) is None
    with pytest.raises(PolicyError, match="different policies"):
        policies(policy_text(), policy_text(version=2, name="other"))
    with pytest.raises(PolicyError, match="before version"):
        policies(policy_text(effective_from="2026-06-01"), policy_text(version=2, effective_from="2026-01-01"))


def test_amounts_are_exact():
    assert usd_to_nanos("150.25") == 150_250_000_000
    assert usd_to_nanos(3) == 3 * USD
    for bad in (1.5, "abc", "0", "NaN"):
        with pytest.raises(AmountError):
            usd_to_nanos(bad)


def test_roster_rows_and_errors_name_the_line():
    rows = parse_roster("engineer,level,team,start,end\nann,L3,core,2026-01-01,\n\nbob,L4,ml,2026-02-01,2026-03-31\n")
    assert [(r.engineer, r.line, r.end) for r in rows] == [("ann", 2, None), ("bob", 4, day("2026-03-31"))]
    cases = [
        ("engineer,level,team,start,end\nann,L3,core,2026-13-01,\n", "r.csv:2: start"),
        ("engineer,level,team,start,end\nann,L3,core,2026-02-01,2026-01-01\n", "r.csv:2: end"),
        ("engineer,level,team,start,end\nann,,core,2026-02-01,\n", "r.csv:2: level: missing"),
        ("engineer,level,team\nann,L3,core\n", "r.csv:1: header"),
        ("engineer,level,team,start,end\nann,L3,core,2026-01-01,\nann,L4,core,2026-03-01,\n",
         "r.csv:3: ann overlaps line 2"),
        ("engineer,level,team,start,end\nann,L3,core,2026-01-01,2026-03-01\nann,L4,core,2026-03-01,\n",
         "r.csv:3: ann overlaps"),
    ]
    for text, message in cases:
        with pytest.raises(RosterError) as info:
            parse_roster(text, "r.csv")
        assert str(info.value).startswith(message), str(info.value)
