"""The databases a server under test can run on: the embedded SQLite file, or PostgreSQL.

The HTTP tests take a :class:`Backend` instead of building servers themselves, so one test body runs on
each backend (``tests/conftest.py`` parametrizes the ``backend`` fixture).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.postgres import Cluster
from tests.server import ServerProcess

NAMES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Backend:
    name: str
    # The shared test cluster, for "postgresql".
    cluster: Cluster | None = None

    def database_url(self) -> str:
        """A new, empty database ("" for SQLite: the file in the data directory)."""
        return self.cluster.new_database() if self.cluster is not None else ""

    def server(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log_level: str = "warning",
        settings: dict[str, str] | None = None,
    ) -> ServerProcess:
        """A server (not started) on a data directory and a database of its own; ``settings`` as
        :class:`ServerProcess` takes them (an S3 blob store, say)."""
        return ServerProcess(
            data_dir, env=env, log_level=log_level, database_url=self.database_url(), settings=settings
        )

    def stored_bytes(self, server: ServerProcess) -> bytes:
        """Everything the server's database holds, as bytes: to check what is never stored."""
        if self.cluster is not None:
            return self.cluster.dump(server.database_url)
        return (server.data_dir / "imagecloud.db").read_bytes()
