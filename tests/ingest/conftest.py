"""Fixtures for the ingest tests: provider fixture files, identity map, a fresh journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from compstream.ingest import ADAPTERS
from compstream.ingest.identity import IdentityMap
from compstream.ingest.journal import Journal
from compstream.ingest.model import Rejection, Skipped, SourceRow
from compstream.ingest.pipeline import Converter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


def fixture_path(name: str) -> Path:
    return FIXTURES / name


def adapt(source: str, *names: str):
    """(rows, rejections, skipped) from the named fixture files."""
    rows, rejections, skipped = [], [], []
    for name in names:
        path = fixture_path(name)
        for item in ADAPTERS[source](path.read_text(encoding="utf-8"), str(path)):
            if isinstance(item, SourceRow):
                rows.append(item)
            elif isinstance(item, Rejection):
                rejections.append(item)
            else:
                assert isinstance(item, Skipped)
                skipped.append(item)
    return rows, rejections, skipped


@pytest.fixture
def identity_map() -> IdentityMap:
    return IdentityMap.load(fixture_path("identity.toml"))


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "ingest-journal.sqlite")
    yield j
    j.close()


@pytest.fixture
def ingest(journal: Journal, identity_map: IdentityMap):
    """ingest(source, *fixture names) -> (events, summary); commits the journal like a real run."""

    def run(source: str, *names: str, commit: bool = True):
        converter = Converter(journal, identity_map)
        items = []
        for name in names:
            path = fixture_path(name)
            items.extend(ADAPTERS[source](path.read_text(encoding="utf-8"), str(path)))
        events = list(converter.convert(items))
        if commit:
            journal.commit()
        else:
            journal.rollback()
        return events, converter.summary

    return run
