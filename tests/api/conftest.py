"""Servers on each backend, and test pictures shared by the HTTP tests (built once per worker, they are
deterministic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests import imagegen
from tests.api import images
from tests.backends import Backend
from tests.s3 import S3Server
from tests.server import ServerProcess


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, backend: Backend) -> ServerProcess:
    """One real server per test worker and backend: every HTTP test runs on SQLite and on PostgreSQL; tests
    isolate themselves with their own users and channels.

    Tests marked with ``tests.api.helpers.both_blob_stores`` also run against a server keeping originals in
    the S3 server (``indirect`` parameter "s3"; "local" is the blob folder in the data directory).
    """
    store = getattr(request, "param", "local")
    found: ServerProcess = request.getfixturevalue("s3_blob_server" if store == "s3" else "local_server")
    return found


@pytest.fixture(scope="session")
def local_server(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Originals in the data directory's blob folder (the embedded default)."""
    process = backend.server(tmp_path_factory.mktemp(f"server-{backend.name}"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def s3_blob_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[ServerProcess]:
    """Originals in a bucket of the S3 server."""
    process = backend.server(
        tmp_path_factory.mktemp(f"s3-blob-server-{backend.name}"), settings=s3_server.settings()
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(request: pytest.FixtureRequest, backend: Backend, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that restart or kill it (originals in S3 with the indirect
    parameter "s3")."""
    settings = None
    if getattr(request, "param", "local") == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        settings = s3.settings()
    process = backend.server(tmp_path / "data", settings=settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def target_array() -> np.ndarray:
    return imagegen.poster(1)


@pytest.fixture(scope="session")
def target_jpeg(target_array: np.ndarray) -> bytes:
    return imagegen.encode(target_array, "jpeg")


@pytest.fixture(scope="session")
def target_png(target_array: np.ndarray) -> bytes:
    return imagegen.encode(target_array, "png")


@pytest.fixture(scope="session")
def target_photo(target_array: np.ndarray) -> bytes:
    return images.photo(target_array, seed=11)[0]


@pytest.fixture(scope="session")
def second_array() -> np.ndarray:
    return imagegen.poster(2)


@pytest.fixture(scope="session")
def second_jpeg(second_array: np.ndarray) -> bytes:
    return imagegen.encode(second_array, "jpeg")


@pytest.fixture(scope="session")
def second_photo(second_array: np.ndarray) -> bytes:
    return images.photo(second_array, seed=12)[0]


@pytest.fixture(scope="session")
def unrelated_photo() -> bytes:
    """A textured photo of something never enrolled anywhere."""
    return images.photo(imagegen.poster(999), seed=13)[0]


@pytest.fixture(scope="session")
def png_bomb() -> bytes:
    return images.png_bomb()
