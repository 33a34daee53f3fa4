"""Allowance policies (TOML): who gets how much per period, and when it expires.

One file is one version of one policy. Several versions of the same policy
may be loaded together (`Policies`): on each day the highest version whose
`effective_from` is on or before that day is in force, so an edit mid-quarter
changes the entitlement from its effective date on, not retroactively.
See docs/hr.md for the format.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from compstream.hr.money import AmountError, nanos_field

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# The grant `kind` is at most 64 characters and carries action, policy,
# version and rule (labels.py); these bounds keep it inside.
POLICY_NAME_LENGTH_MAX = 16
RULE_NAME_LENGTH_MAX = 20
VERSION_MAX = 9999
EXPIRY_DAYS_MAX = 3660
PERIOD_KINDS = ("month", "quarter")
_EXPIRES = re.compile(r"^(\d+)d$")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Expiry:
    """`period_end`, `Nd` (N days after the grant takes effect) or `never`."""

    kind: str  # "period_end" | "days" | "never"
    days: int = 0

    def __str__(self) -> str:
        return f"{self.days}d" if self.kind == "days" else self.kind


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    amount_nanos: int
    period: str  # month | quarter
    expires: Expiry
    levels: frozenset[str] | None = None  # None = any level
    teams: frozenset[str] | None = None   # None = any team
    rollover_cap_nanos: int = 0
    prorate: bool = True

    def matches(self, level: str, team: str) -> bool:
        return (self.levels is None or level in self.levels) and (self.teams is None or team in self.teams)

    def describe(self) -> str:
        who = []
        if self.levels is not None:
            who.append("level " + "/".join(sorted(self.levels)))
        if self.teams is not None:
            who.append("team " + "/".join(sorted(self.teams)))
        return f"{self.name} ({', '.join(who) or 'everyone'}, per {self.period})"


@dataclass(frozen=True, slots=True)
class Bonus:
    """A one-off grant on a date, to listed engineers and/or matching levels/teams."""

    name: str
    amount_nanos: int
    on: date
    expires: Expiry
    engineers: frozenset[str] | None = None
    levels: frozenset[str] | None = None
    teams: frozenset[str] | None = None

    def matches(self, engineer: str, level: str, team: str) -> bool:
        return ((self.engineers is None or engineer in self.engineers)
                and (self.levels is None or level in self.levels)
                and (self.teams is None or team in self.teams))


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: int
    effective_from: date
    rules: tuple[Rule, ...]
    bonuses: tuple[Bonus, ...]
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _where(path: str, section: str, key: str | None = None) -> str:
    return f"{path}: {section}" + (f": {key}" if key else "")


def _name(value: object, what: str, length_max: int) -> str:
    if not isinstance(value, str) or not NAME.match(value) or len(value) > length_max:
        raise PolicyError(f"{what}: lower-case letters, digits and '-', at most {length_max} characters, "
                          f"got {value!r}")
    return value


def _names(value: object, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v and len(v) <= 256 for v in value)):
        raise PolicyError(f"{what}: a non-empty list of names")
    return frozenset(value)


def _expiry(value: object, what: str) -> Expiry:
    if value in ("period_end", "never"):
        return Expiry(value)
    m = _EXPIRES.match(value) if isinstance(value, str) else None
    if m is None or not 1 <= int(m.group(1)) <= EXPIRY_DAYS_MAX:
        raise PolicyError(f"{what}: 'period_end', 'never' or 'Nd' (1..{EXPIRY_DAYS_MAX} days), got {value!r}")
    return Expiry("days", int(m.group(1)))


def _amount(table: dict, what: str) -> int:
    try:
        return nanos_field(table, "amount_usd", "amount_nanos", required=True)
    except AmountError as exc:
        raise PolicyError(f"{what}: {exc}") from exc


def _rollover_cap(table: dict, what: str) -> int:
    try:
        return nanos_field(table, "rollover_cap_usd", "rollover_cap_nanos", required=False) or 0
    except AmountError as exc:
        raise PolicyError(f"{what}: {exc}") from exc


def _check_keys(table: dict, allowed: set[str], what: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PolicyError(f"{what}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


_RULE_KEYS = {"name", "levels", "teams", "amount_usd", "amount_nanos", "period", "expires",
              "rollover_cap_usd", "rollover_cap_nanos", "prorate"}
_BONUS_KEYS = {"name", "engineers", "levels", "teams", "amount_usd", "amount_nanos", "on", "expires"}


def _rule(raw: object, path: str, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(_where(path, f"rule[{index}]") + ": not a table")
    what = _where(path, f"rule[{index}] ({raw.get('name', '?')})")
    _check_keys(raw, _RULE_KEYS, what)
    name = _name(raw.get("name"), f"{what}: name", RULE_NAME_LENGTH_MAX)
    period = raw.get("period", "month")
    if period not in PERIOD_KINDS:
        raise PolicyError(f"{what}: period must be 'month' or 'quarter', got {period!r}")
    expires = _expiry(raw.get("expires", "period_end"), f"{what}: expires")
    cap = _rollover_cap(raw, what)
    if cap and expires.kind != "period_end":
        # Rollover carries what expired unused at the period end; a budget
        # that outlives its period is still usable, so it cannot roll over.
        raise PolicyError(f"{what}: a rollover cap needs expires = 'period_end'")
    prorate = raw.get("prorate", True)
    if not isinstance(prorate, bool):
        raise PolicyError(f"{what}: prorate must be true or false")
    return Rule(name, _amount(raw, what), period, expires, _names(raw.get("levels"), f"{what}: levels"),
                _names(raw.get("teams"), f"{what}: teams"), cap, prorate)


def _bonus(raw: object, path: str, index: int) -> Bonus:
    if not isinstance(raw, dict):
        raise PolicyError(_where(path, f"bonus[{index}]") + ": not a table")
    what = _where(path, f"bonus[{index}] ({raw.get('name', '?')})")
    _check_keys(raw, _BONUS_KEYS, what)
    name = _name(raw.get("name"), f"{what}: name", RULE_NAME_LENGTH_MAX)
    on = raw.get("on")
    if not isinstance(on, date) or hasattr(on, "hour"):
        raise PolicyError(f"{what}: on must be a TOML date (2026-12-15)")
    expires = _expiry(raw.get("expires", "never"), f"{what}: expires")
    if expires.kind == "period_end":
        raise PolicyError(f"{what}: a bonus expires 'never' or after 'Nd'")
    bonus = Bonus(name, _amount(raw, what), on, expires, _names(raw.get("engineers"), f"{what}: engineers"),
                  _names(raw.get("levels"), f"{what}: levels"), _names(raw.get("teams"), f"{what}: teams"))
    if bonus.engineers is None and bonus.levels is None and bonus.teams is None:
        raise PolicyError(f"{what}: say who gets it (engineers, levels and/or teams)")
    return bonus


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    _check_keys(doc, {"policy", "rule", "bonus"}, path)
    head = doc.get("policy")
    if not isinstance(head, dict):
        raise PolicyError(f"{path}: missing [policy] table (name, version, effective_from)")
    _check_keys(head, {"name", "version", "effective_from", "description"}, f"{path}: [policy]")
    name = _name(head.get("name"), f"{path}: [policy] name", POLICY_NAME_LENGTH_MAX)
    version = head.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION_MAX:
        raise PolicyError(f"{path}: [policy] version must be an integer 1..{VERSION_MAX}, got {version!r}")
    effective = head.get("effective_from")
    if not isinstance(effective, date) or hasattr(effective, "hour"):
        raise PolicyError(f"{path}: [policy] effective_from must be a TOML date (2026-10-01)")
    rules = tuple(_rule(r, path, i) for i, r in enumerate(doc.get("rule", []), 1))
    bonuses = tuple(_bonus(b, path, i) for i, b in enumerate(doc.get("bonus", []), 1))
    seen: set[str] = set()
    items: tuple[Rule | Bonus, ...] = (*rules, *bonuses)
    for item in items:
        if item.name in seen:
            raise PolicyError(f"{path}: rule/bonus name {item.name!r} is used twice")
        seen.add(item.name)
    return Policy(name, version, effective, rules, bonuses, path)


def load_policy(path: str | Path) -> Policy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from exc
    return parse_policy(text, str(path))


class Policies:
    """The versions of one policy; `in_force(day)` picks the one for a day."""

    def __init__(self, versions: list[Policy]):
        if not versions:
            raise PolicyError("no policy given")
        names = {p.name for p in versions}
        if len(names) != 1:
            raise PolicyError(f"policy files name different policies: {', '.join(sorted(names))}")
        by_version: dict[int, Policy] = {}
        for p in versions:
            if p.version in by_version:
                raise PolicyError(f"{p.source}: version {p.version} also given in {by_version[p.version].source}")
            by_version[p.version] = p
        self.versions = sorted(by_version.values(), key=lambda p: p.version)
        for older, newer in zip(self.versions, self.versions[1:], strict=False):
            if newer.effective_from < older.effective_from:
                raise PolicyError(f"{newer.source}: version {newer.version} takes effect before version "
                                  f"{older.version} ({newer.effective_from} < {older.effective_from})")
        self.name = self.versions[0].name

    def in_force(self, day: date) -> Policy | None:
        found = None
        for p in self.versions:
            if p.effective_from <= day:
                found = p
        return found

    def boundaries(self) -> list[date]:
        return [p.effective_from for p in self.versions]
