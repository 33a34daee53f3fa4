"""How a policy grant names itself: its `kind` and `grant_id`.

The policy version and rule travel with the grant in fields the event
already has (no schema change):

* kind     = `<action>:<policy>@<version>/<line>`, e.g. `allowance:eng@3/base-l3`
             (action: allowance, adjust, rollover, bonus; at most 64 characters);
* grant_id = `pol:<policy>:<period>:<line>:<16 hex>`, e.g. `pol:eng:2026-12:base-l3:9f…`
             (period `YYYY-MM` or `YYYY-Qn`; line = rule name, `<rule>.rollover`
             or bonus name).

The statement parses the kind to show policy and rule; the allocator parses
grant ids to find what it issued before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compstream.domain.events import GRANT_KIND_LENGTH_MAX

ACTIONS = ("allowance", "adjust", "rollover", "bonus")
ROLLOVER_SUFFIX = ".rollover"
_KIND = re.compile(r"^(allowance|adjust|rollover|bonus):([a-z0-9][a-z0-9-]*)@(\d+)/([a-z0-9][a-z0-9.-]*)$")
_GRANT_ID = re.compile(r"^pol:([a-z0-9][a-z0-9-]*):(\d{4}-(?:\d{2}|Q[1-4])):([a-z0-9][a-z0-9.-]*):([0-9a-f]{16})$")


@dataclass(frozen=True, slots=True)
class KindLabel:
    action: str
    policy: str
    version: int
    line: str

    @property
    def policy_label(self) -> str:
        return f"{self.policy}@{self.version}"


@dataclass(frozen=True, slots=True)
class GrantRef:
    policy: str
    period: str
    line: str


def grant_kind(action: str, policy: str, version: int, line: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown grant action {action!r}")
    kind = f"{action}:{policy}@{version}/{line}"
    if len(kind) > GRANT_KIND_LENGTH_MAX:  # policy.py bounds the names so this cannot happen
        raise ValueError(f"grant kind longer than {GRANT_KIND_LENGTH_MAX}: {kind!r}")
    return kind


def parse_kind(kind: str | None) -> KindLabel | None:
    m = _KIND.match(kind or "")
    return None if m is None else KindLabel(m.group(1), m.group(2), int(m.group(3)), m.group(4))


def grant_id(policy: str, period: str, line: str, digest16: str) -> str:
    return f"pol:{policy}:{period}:{line}:{digest16}"


def parse_grant_id(value: str) -> GrantRef | None:
    m = _GRANT_ID.match(value)
    return None if m is None else GrantRef(m.group(1), m.group(2), m.group(3))
