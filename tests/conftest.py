from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
