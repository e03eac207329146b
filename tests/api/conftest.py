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
from tests.server import ServerProcess


@pytest.fixture(scope="session")
def server(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test worker and backend: every HTTP test runs on SQLite and on PostgreSQL."""
    process = backend.server(tmp_path_factory.mktemp(f"server-{backend.name}"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(backend: Backend, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that restart or kill it."""
    process = backend.server(tmp_path / "data")
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
