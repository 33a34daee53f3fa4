from __future__ import annotations

import itertools

import pytest

from compstream.history import open_history

_databases = itertools.count()


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory) -> str:
    """One embedded engine path for the whole run: chdb allows one per process."""
    return f"chdb://{tmp_path_factory.mktemp('history-chdb')}/clickhouse"


@pytest.fixture(scope="module")
def chdb_holder(chdb_dsn):
    # Keeps the shared client open for a module (opening costs ~0.3 s) and
    # releases it at the module's end so other suites may open other paths.
    holder = open_history(chdb_dsn, database="holder")
    yield holder
    holder.close()


@pytest.fixture
def ch_store(chdb_dsn, chdb_holder):
    """A migrated ClickHouse store in a fresh database of the shared engine."""
    store = open_history(chdb_dsn, database=f"h{next(_databases)}")
    store.migrate()
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()
