"""The same contract suite against a real ClickHouse *server* over HTTP, in a
Docker container (testcontainers). Skips with a reason where no Docker daemon
answers; the embedded-engine run of the same suite (test_clickhouse_store.py)
always runs, so this is never the only test of anything."""

from __future__ import annotations

import itertools
import time

import pytest

from compstream.history import open_history

from .test_clickhouse_store import TestClickHouseHistoryStore as _EmbeddedSuite

IMAGE = "clickhouse/clickhouse-server:25.8"
_databases = itertools.count()


def _docker_or_skip():
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # no daemon, no socket, no permission
        pytest.skip(f"no Docker daemon answers ({type(exc).__name__}); the embedded-engine suite covers this")


@pytest.fixture(scope="module")
def server_dsn():
    _docker_or_skip()
    from testcontainers.core.container import DockerContainer

    container = (DockerContainer(IMAGE)
                 .with_env("CLICKHOUSE_USER", "compstream").with_env("CLICKHOUSE_PASSWORD", "compstream")
                 .with_exposed_ports(8123))
    with container:
        dsn = (f"http://compstream:compstream@{container.get_container_host_ip()}:"
               f"{container.get_exposed_port(8123)}")
        deadline = time.monotonic() + 60
        while True:
            try:
                open_history(dsn, database="ping").close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield dsn


@pytest.mark.docker
class TestClickHouseServerHistoryStore(_EmbeddedSuite):
    @pytest.fixture
    def store(self, server_dsn):
        store = open_history(server_dsn, database=f"srv{next(_databases)}")
        store.migrate()
        yield store
        store.command(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()
