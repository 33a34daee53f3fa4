"""Shapes shared by the pure adapters and the conversion pipeline.

An adapter turns one provider export into a stream of `SourceRow` (a usage
row it understood) and `Rejection` (a row it refused, with where and why).
Nothing else: no pricing, no attribution, no ids beyond the row's identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Iterator, Union

from compstream.domain.events import TOKENS_MAX


class IngestError(Exception):
    """A whole input (file, config, journal) cannot be used."""


class RowError(ValueError):
    """One source row cannot be accepted; the adapter turns it into a Rejection."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a row came from: the file, a 1-based line or CSV row, and a JSON path."""

    file: str
    line: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
        if self.path:
            text += f" ({self.path})"
        return text


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token counts in the canonical convention.

    `input` is ALL input tokens, cache reads and cache writes included (the
    OpenAI and genai-prices convention); `cache_read` and `cache_write` are
    subsets of it. `cache_write_1h` is the subset of `cache_write` written with
    a one-hour TTL (priced higher by Anthropic); the canonical event does not
    carry it, the journal keeps it for repricing.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    input_audio: int = 0
    output_audio: int = 0
    web_searches: int = 0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise RowError(f"token count {name} must be an integer, got {value!r}")
            if value < 0:
                raise RowError(f"token count {name} is negative ({value})")
            if value > TOKENS_MAX:
                raise RowError(f"token count {name} exceeds {TOKENS_MAX}")
        if self.cache_read + self.cache_write > self.input:
            raise RowError(
                f"cache tokens ({self.cache_read} read + {self.cache_write} write) exceed input tokens ({self.input})"
            )
        if self.cache_write_1h > self.cache_write:
            raise RowError("1h cache-write tokens exceed cache-write tokens")

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, raw: dict) -> "TokenCounts":
        return cls(**{name: int(raw.get(name, 0)) for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One usage row as the provider reported it, normalised but not yet priced.

    `identity` is the ordered list of fields that name the row in the source
    (provider, bucket bounds, key/user/project, model, tier, ...): two exports
    of the same row have equal identities, a restated row has an equal identity
    and different numbers. `principals` are the provider identities usable for
    attribution, most specific first (see identity.py for the precedence).
    `provider_cost_usd` is the cost the provider itself reported, if any.
    """

    source: str
    provider: str
    model: str
    occurred_at: datetime
    identity: tuple[tuple[str, object], ...]
    principals: tuple[tuple[str, str], ...]
    tokens: TokenCounts
    location: Location
    provider_cost_usd: Decimal | None = None
    price_context: tuple[tuple[str, str], ...] = ()
    # A row that names its engineer directly (canonical JSONL); identity mapping
    # then only resolves agent owners.
    engineer_id: str | None = None
    # Canonical JSONL rows keep their own ids and provenance.
    event_id: str | None = None
    corrects_event_id: str | None = None
    unpriced_reason: str | None = None
    price_version: str | None = None
    # Source revision marker (GCP `export_time`): a row whose marker is older
    # than the journal's is stale and ignored; a newer one may restate.
    revision_marker: str | None = None
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Rejection:
    location: Location
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A well-formed row that is not AI usage (another GCP service, tax, ...)."""

    location: Location
    reason: str


AdapterItem = Union[SourceRow, Rejection, Skipped]
AdapterOutput = Iterator[AdapterItem]
