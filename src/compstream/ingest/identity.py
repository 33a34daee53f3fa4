"""Provider identities -> engineer_id, through agents to their owning engineer.

The map is a versioned TOML (or JSON) document; see examples/identity.toml:

    version = 3
    [owners]                      # agent -> owner (an engineer or another agent)
    "agent:reviewer" = "e1"
    "agent:reviewer/summariser" = "agent:reviewer"
    [openai.api_key_id]   "key_abc" = "agent:reviewer"
    [openai.user_id]      "user-abc" = "e1"
    [openai.project_id]   "proj_x" = "e2"
    [anthropic.api_key_id] / [anthropic.workspace_id]
    [claude_code.email] / [claude_code.api_key_name]
    [gcp] label_precedence = ["agent", "engineer"]
    [gcp.labels.engineer] "alice" = "e1"
    [gcp.project_id]      "my-proj" = "e3"

Precedence — the most specific identity the row carries wins:
- openai (and openai-costs): api_key_id > user_id > project_id
  (one key is narrower than the user who owns it, a user narrower than a project);
- anthropic: api_key_id > workspace_id;
- claude-code: the actor (email for users, api_key_name for API actors);
- gcp: resource labels in `label_precedence` order, then other mapped label
  keys alphabetically, then project.id;
- jsonl: the row's own engineer_id.

The winning principal is then followed through `owners` (an `agent:` id must
have an owner; chains are at most OWNER_DEPTH_MAX long; cycles are refused
when the map is loaded). A row whose identities map to no one is booked to
`unattributed` — counted, never dropped. Changing the map affects rows
ingested afterwards; it does not re-attribute history (corrections of a
restated row stay with the engineer the original was booked to).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compstream.domain.events import ENGINEER_ID_LENGTH_MAX
from compstream.ingest.model import IngestError, SourceRow

UNATTRIBUTED = "unattributed"
OWNER_DEPTH_MAX = 8
AGENT_PREFIX = "agent:"

# source -> (config section, principal kinds most specific first)
PRECEDENCE: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("openai", ("api_key_id", "user_id", "project_id")),
    "openai-costs": ("openai", ("project_id",)),
    "anthropic": ("anthropic", ("api_key_id", "workspace_id")),
    "claude-code": ("claude_code", ("email", "api_key_name")),
    "gcp": ("gcp", ("project_id",)),  # labels come first, see _candidates
    "jsonl": ("jsonl", ()),
}
_SECTION_KINDS = {
    "openai": {"api_key_id", "user_id", "project_id"},
    "anthropic": {"api_key_id", "workspace_id"},
    "claude_code": {"email", "api_key_name"},
    "gcp": {"project_id", "labels", "label_precedence"},
}


class IdentityConfigError(IngestError):
    pass


@dataclass(frozen=True, slots=True)
class Attribution:
    engineer_id: str
    via: str  # e.g. "openai.api_key_id=key_abc -> agent:reviewer -> e1", or "unmapped"

    @property
    def unattributed(self) -> bool:
        return self.engineer_id == UNATTRIBUTED


def _principal(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise IdentityConfigError(f"{where}: expected a non-empty principal id, got {value!r}")
    if len(value) > ENGINEER_ID_LENGTH_MAX:
        raise IdentityConfigError(f"{where}: principal id longer than {ENGINEER_ID_LENGTH_MAX}")
    return value.strip()


@dataclass
class IdentityMap:
    version: int | str = 0
    owners: dict[str, str] = field(default_factory=dict)
    # (section, kind) -> {identity value -> principal}
    tables: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    label_precedence: tuple[str, ...] = ()

    @classmethod
    def empty(cls) -> "IdentityMap":
        return cls(version="none")

    @classmethod
    def load(cls, path: str | Path) -> "IdentityMap":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise IdentityConfigError(f"{path}: cannot read identity map: {exc.strerror or exc}") from exc
        try:
            raw = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise IdentityConfigError(f"{path}: malformed identity map: {exc}") from exc
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, where: str = "identity map") -> "IdentityMap":
        if not isinstance(raw, dict):
            raise IdentityConfigError(f"{where}: expected a table")
        if "version" not in raw:
            raise IdentityConfigError(f"{where}: missing 'version'")
        version = raw["version"]
        if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
            raise IdentityConfigError(f"{where}: 'version' must be an integer or string")
        owners_raw = raw.get("owners", {})
        if not isinstance(owners_raw, dict):
            raise IdentityConfigError(f"{where}: [owners] must be a table")
        owners = {
            _principal(k, f"{where}: owners key"): _principal(v, f"{where}: owners.{k}") for k, v in owners_raw.items()
        }
        tables: dict[tuple[str, str], dict[str, str]] = {}
        label_precedence: tuple[str, ...] = ()
        for section, body in raw.items():
            if section in ("version", "owners", "description"):
                continue
            if section not in _SECTION_KINDS:
                raise IdentityConfigError(f"{where}: unknown section [{section}] (expected {sorted(_SECTION_KINDS)})")
            if not isinstance(body, dict):
                raise IdentityConfigError(f"{where}: [{section}] must be a table")
            for kind, mapping in body.items():
                if kind not in _SECTION_KINDS[section]:
                    raise IdentityConfigError(f"{where}: unknown key {section}.{kind}")
                if kind == "label_precedence":
                    if not isinstance(mapping, list) or not all(isinstance(x, str) for x in mapping):
                        raise IdentityConfigError(f"{where}: gcp.label_precedence must be a list of label keys")
                    label_precedence = tuple(mapping)
                    continue
                if kind == "labels":
                    if not isinstance(mapping, dict):
                        raise IdentityConfigError(f"{where}: [gcp.labels] must be a table of label keys")
                    for label_key, values in mapping.items():
                        tables[(section, f"label:{label_key}")] = _table(values, f"{where}: gcp.labels.{label_key}")
                    continue
                table = _table(mapping, f"{where}: {section}.{kind}")
                if kind == "email":
                    table = {k.lower(): v for k, v in table.items()}
                tables[(section, kind)] = table
        result = cls(version=version, owners=owners, tables=tables, label_precedence=label_precedence)
        result._validate(where)
        return result

    def _validate(self, where: str) -> None:
        principals = set(self.owners)
        for table in self.tables.values():
            principals.update(table.values())
        for principal in sorted(principals):
            self.resolve_owner(principal, where)

    def resolve_owner(self, principal: str, where: str = "identity map") -> tuple[str, list[str]]:
        """Follow owners to an engineer. Returns (engineer_id, chain). Raises on cycle/depth/orphan agent."""
        chain = [principal]
        current = principal
        while current in self.owners:
            current = self.owners[current]
            if current in chain:
                raise IdentityConfigError(f"{where}: owner cycle {' -> '.join(chain + [current])}")
            chain.append(current)
            if len(chain) - 1 > OWNER_DEPTH_MAX:
                raise IdentityConfigError(f"{where}: owner chain longer than {OWNER_DEPTH_MAX}: {' -> '.join(chain)}")
        if current.startswith(AGENT_PREFIX):
            raise IdentityConfigError(f"{where}: agent {current!r} has no owner (add it to [owners])")
        if current == UNATTRIBUTED:
            raise IdentityConfigError(f"{where}: {UNATTRIBUTED!r} is reserved for unmapped usage")
        return current, chain

    def _candidates(self, row: SourceRow) -> list[tuple[str, str]]:
        section, kinds = PRECEDENCE.get(row.source, (row.source, ()))
        carried = dict(row.principals)
        ordered: list[tuple[str, str]] = []
        if row.source == "gcp":
            label_kinds = [k for k in carried if k.startswith("label:")]
            rank = {f"label:{key}": i for i, key in enumerate(self.label_precedence)}
            label_kinds.sort(key=lambda k: (rank.get(k, len(rank)), k))
            ordered.extend((k, carried[k]) for k in label_kinds)
        ordered.extend((k, carried[k]) for k in kinds if k in carried)
        return [(f"{section}.{k}", v) for k, v in ordered]

    def attribute(self, row: SourceRow) -> Attribution:
        if row.engineer_id is not None:
            engineer, chain = self._resolve_runtime(row.engineer_id)
            return Attribution(engineer, " -> ".join(chain))
        for qualified, value in self._candidates(row):
            section, kind = qualified.split(".", 1)
            table = self.tables.get((section, kind))
            if not table:
                continue
            key = value.lower() if kind == "email" else value
            principal = table.get(key)
            if principal is None:
                continue
            engineer, chain = self.resolve_owner(principal)
            return Attribution(engineer, f"{qualified}={value} -> " + " -> ".join(chain))
        return Attribution(UNATTRIBUTED, "unmapped")

    def _resolve_runtime(self, principal: str) -> tuple[str, list[str]]:
        # A canonical row may name an agent; an unknown agent is booked to
        # unattributed rather than to a non-engineer id.
        try:
            return self.resolve_owner(principal, "engineer_id")
        except IdentityConfigError:
            return UNATTRIBUTED, [principal, UNATTRIBUTED]


def _table(values: Any, where: str) -> dict[str, str]:
    if not isinstance(values, dict):
        raise IdentityConfigError(f"{where}: must be a table of identity = principal")
    return {str(k): _principal(v, f"{where}.{k}") for k, v in values.items()}
