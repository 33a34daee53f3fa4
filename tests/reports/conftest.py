from __future__ import annotations

import pytest

from compstream.history import open_history

from . import scenario


@pytest.fixture(scope="session")
def report_history(tmp_path_factory):
    """Build the scenario once into its own chdb path, then release the engine
    (chdb allows one open path per process; other suites open theirs)."""
    dsn = f"chdb://{tmp_path_factory.mktemp('reports-chdb')}/clickhouse"
    store = open_history(dsn)
    try:
        store.migrate()
        evs = scenario.build(store)
    finally:
        store.close()
    return dsn, evs


@pytest.fixture(scope="module")
def store(report_history):
    dsn, _ = report_history
    opened = open_history(dsn)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def events(report_history):
    return report_history[1]
