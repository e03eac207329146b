"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a temporary folder, 127.0.0.1 only.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/<version>/bin``); no system
service is used. initdb and postgres refuse to run as root, so as root the cluster runs as the
``postgres`` user in a folder it owns. Each server under test gets a database of its own in the one
cluster of its test process, so the suite pays for initdb once per process, not once per server.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.server import free_port

REQUIRE_ENV = "IMAGECLOUD_REQUIRE_POSTGRES"
# The superuser initdb makes; trust authentication is fine for a cluster that listens on 127.0.0.1 only
# and lives for one test run.
SUPERUSER = "postgres"
# Durability settings off: a crash of a test cluster loses nothing anyone keeps.
_FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"


def binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name)
    )
    return installed[-1].parent if installed else None


def missing_reason() -> str:
    return "PostgreSQL tests need initdb and pg_ctl (apt-get install postgresql)"


class Cluster:
    """One running cluster; :meth:`new_database` hands out empty databases for servers under test."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="imagecloud-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._names = itertools.count()
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            # The folder must belong to the user the server runs as (it refuses anything more open).
            self._run_as = ["runuser", "-u", SUPERUSER, "--"]
            account = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *command: str) -> None:
        # In the cluster's folder: the postgres user may not be allowed into the caller's working directory.
        subprocess.run(
            [*self._run_as, *command],
            check=True,
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> Cluster:
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
        )
        # No Unix socket: the test servers connect over TCP, and the default socket folder may not exist.
        options = f"-h 127.0.0.1 -p {self.port} -k '' {_FAST}"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        # The form PostgreSQL's own tools take, as an operator would write it.
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "imagecloud") -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def allow_connections(self, url: str, allowed: bool) -> None:
        """Open or close the database at ``url`` to clients; closing also ends the connections it has."""
        database = url.rsplit("/", 1)[-1]
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                # With a timeout it returns once each backend has exited, not when it was only signalled.
                connection.execute(
                    "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                )

    def dump(self, url: str) -> bytes:
        """Every row of the database at ``url``, as pg_dump writes them."""
        database = url.rsplit("/", 1)[-1]
        done = subprocess.run(
            [str(self.bin_dir / "pg_dump"), "--data-only", "--dbname", self._conninfo(database)],
            check=True,
            capture_output=True,
        )
        return done.stdout

    def _conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"
