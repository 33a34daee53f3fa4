"""docs/auditing.md and sql/auditor_role.sql must keep running: every ```sql
block of the doc is executed on the embedded engine against sample data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compstream.history import open_history
from compstream.history.verify import period_digest

from . import data

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "auditing.md"
ROLES = ROOT / "sql" / "auditor_role.sql"


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def compstream_db(chdb_dsn, chdb_holder):
    store = open_history(chdb_dsn, database="compstream")  # the doc's name
    store.command("DROP DATABASE IF EXISTS compstream")
    store.migrate()
    store.append_batch(data.full_batch(), "docs")
    yield store
    store.command("DROP DATABASE IF EXISTS compstream")
    store.close()


def test_doc_has_at_least_ten_queries():
    assert len(_sql_blocks()) >= 11


@pytest.mark.parametrize("index", range(len(_sql_blocks())))
def test_doc_query_runs_and_returns_rows(compstream_db, index):
    sql = _sql_blocks()[index]
    rows = compstream_db.query_rows(sql)
    assert rows, f"query #{index} returned nothing:\n{sql}"


def test_doc_digest_sql_equals_period_digest(compstream_db):
    block = next(b for b in _sql_blocks() if "compstream-digest-v1" in b)
    digest, engineers = compstream_db.query_rows(block)[0]
    expected = period_digest(compstream_db, "2026-09")
    assert (digest, engineers) == (expected.digest, expected.engineers)


def test_doc_duplicate_query_shows_no_duplicates(compstream_db):
    block = next(b for b in _sql_blocks() if "distinct_rows" in b)
    for _, stored, distinct in compstream_db.query_rows(block):
        assert stored == distinct


def test_role_file_statements_parse(compstream_db):
    text = "\n".join(line for line in ROLES.read_text().splitlines() if not line.lstrip().startswith("--"))
    statements = [s.strip() for s in text.split(";") if s.strip()]
    assert len(statements) >= 10
    for statement in statements:
        compstream_db.query_rows(f"EXPLAIN AST {statement}")  # raises on a syntax error
    auditor = [s for s in statements if s.endswith("TO compstream_auditor")]
    assert auditor == ["GRANT SELECT ON compstream.* TO compstream_auditor"]
    writer = [s for s in statements if "TO compstream_writer" in s]
    assert all(s.startswith("GRANT INSERT ON") or "schema_migrations" in s for s in writer)
