"""A server on PostgreSQL whose database stops answering says so (/readyz 503, API calls 20015, which tells
clients to retry) and recovers by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.postgres import Cluster
from tests.server import ServerProcess


@pytest.fixture
def pg_server(postgres_cluster: Cluster, tmp_path: Path) -> Iterator[ServerProcess]:
    process = Backend("postgresql", postgres_cluster).server(tmp_path / "data")
    process.start()
    yield process
    process.stop()


def test_readiness_follows_the_database(postgres_cluster: Cluster, pg_server: ServerProcess) -> None:
    account = pg_server.new_account("patient")
    ready = httpx.get(f"{pg_server.url}/readyz", timeout=30)
    assert ready.status_code == 200

    postgres_cluster.allow_connections(pg_server.database_url, False)
    down = httpx.get(f"{pg_server.url}/readyz", timeout=30)
    assert down.status_code == 503
    assert down.json()["dependencies"]["database"] == {"backend": "postgresql", "ok": False}
    assert httpx.get(f"{pg_server.url}/healthz", timeout=30).status_code == 200  # alive, only not ready
    assert pg_server.call("GetImages", account.auth())["returncode"] == 20015

    postgres_cluster.allow_connections(pg_server.database_url, True)
    # The pool tests each connection before use, so the first request after the outage gets a new one.
    assert httpx.get(f"{pg_server.url}/readyz", timeout=30).status_code == 200
    assert pg_server.call("GetImages", account.auth())["returncode"] == 0
