"""One server per embedded data directory, and a start-up sweep that never takes another process's add.

A second server on a directory in use would delete the files of the first one's adds in flight (they
have no row yet) and keep an index of its own; it must refuse and say who holds the directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from imagecloud.config import Settings
from imagecloud.service import build_service
from imagecloud.storage.blobs import new_blob_key
from imagecloud.storage.lock import DataDirInUse, DataDirLock
from tests import imagegen
from tests.api.helpers import add_ok, find_in
from tests.backends import Backend
from tests.postgres import Cluster
from tests.server import ServerProcess, free_port


def serve(data_dir: Path, port: int, database_url: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagecloud",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *(["--database", database_url] if database_url else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcome(process: subprocess.Popen[str], port: int) -> str:
    """Wait until the process either exits ("exited") or answers /readyz ("serving")."""
    while process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return "serving"
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return "exited"


def refused(data_dir: Path, database_url: str = "") -> tuple[int, str]:
    """Start a second server on ``data_dir``; it must exit rather than serve. Its exit code and stderr."""
    port = free_port()
    second = serve(data_dir, port, database_url)
    try:
        assert outcome(second, port) == "exited"
        _, err = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    return second.returncode, err


def orphan(blob_dir: Path, data: bytes = b"an add in flight") -> Path:
    """A file as an add leaves it between writing the original and committing its row."""
    key = new_blob_key()
    path = blob_dir / key[:2] / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class TestOneServerPerDirectory:
    def test_a_second_server_refuses_naming_the_holder(self, fresh_server: ServerProcess) -> None:
        assert fresh_server.process is not None
        account = fresh_server.new_account("first")
        poster = imagegen.poster(61)
        add_ok(fresh_server, account, "poster", imagegen.encode(poster))
        returncode, err = refused(fresh_server.data_dir)
        assert returncode == 1
        assert f"in use by process {fresh_server.process.pid} on " in err
        assert "imagecloud serve, since " in err
        assert "several servers need a shared database and blob store" in err
        # The first server was not disturbed.
        photo = imagegen.encode(imagegen.photo(poster, seed=5).image)
        assert find_in(fresh_server, account, photo)["identifier"] == "poster"

    def test_on_postgresql_too(self, postgres_cluster: Cluster, tmp_path: Path) -> None:
        """The database is a server of its own, but the index, blobs and previews are still the data
        directory's: a second server there would disturb the first just the same."""
        first = Backend("postgresql", postgres_cluster).server(tmp_path / "data")
        first.start()
        try:
            returncode, err = refused(first.data_dir, first.database_url)
            assert returncode == 1
            assert first.process is not None and f"in use by process {first.process.pid} on " in err
        finally:
            first.stop()

    def test_in_process_import_refuses_while_the_directory_is_held(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        folder = tmp_path / "covers"
        folder.mkdir()
        (folder / "cover1.jpg").write_bytes(imagegen.encode(imagegen.poster(62)))
        service = build_service(Settings(data_dir=data_dir))
        service.db.migrate()
        service.create_user("alice")
        service.create_channel("covers", "alice")
        service.db.dispose()
        with DataDirLock(data_dir, "imagecloud serve"):
            command = ["import", str(folder), "--channel", "covers", "--data-dir", str(data_dir)]
            refused = subprocess.run(
                [sys.executable, "-m", "imagecloud", *command],
                capture_output=True,
                text=True,
                timeout=300,
            )
        assert refused.returncode == 1
        assert f"in use by process {os.getpid()}" in refused.stderr
        assert "--url" in refused.stderr
        assert not list((data_dir / "blobs").rglob("*"))

    def test_operator_commands_that_change_only_rows_run_next_to_a_server(
        self, fresh_server: ServerProcess
    ) -> None:
        """Users, keys, channels and quotas are rows the server reads on every request: SQLite lets the two
        processes write them in turn, and the server needs no restart to see them."""

        def cli(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "imagecloud", *args, "--data-dir", str(fresh_server.data_dir)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        key = cli("user", "create", "bob")
        cli("channel", "create", "bobs", "--owner", "bob", "--quota", "5")
        body = fresh_server.call("ListChannels", {"username": "bob", "secretkey": key})
        assert body["channels"] == [{"channel": "bobs", "count": 0, "quota": 5}]


class TestLock:
    def test_held_once_and_free_again_after_release(self, tmp_path: Path) -> None:
        first = DataDirLock(tmp_path, "imagecloud serve").acquire()
        with pytest.raises(DataDirInUse) as refused:
            DataDirLock(tmp_path, "imagecloud import").acquire()
        assert refused.value.holder["pid"] == os.getpid()
        assert refused.value.holder["command"] == "imagecloud serve"
        first.release()
        DataDirLock(tmp_path, "imagecloud import").acquire().release()

    def test_the_holders_death_frees_it(self, tmp_path: Path) -> None:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, pathlib; from imagecloud.storage.lock import DataDirLock; "
                f"DataDirLock(pathlib.Path({str(tmp_path)!r}), 'holder').acquire(); "
                "print('held', flush=True); sys.stdin.read()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse):
            DataDirLock(tmp_path, "second").acquire()
        holder.kill()
        holder.wait()
        DataDirLock(tmp_path, "second").acquire().release()


class TestStartUpSweep:
    def test_without_the_lock_only_old_orphans_go(self, tmp_path: Path) -> None:
        """A process that does not hold the directory (``imagecloud find``, servers sharing a database)
        cannot tell a crash's leftover from another process's add in flight, except by its age."""
        settings = Settings(data_dir=tmp_path / "data")
        service = build_service(settings)
        young = orphan(settings.resolved_blob_dir)
        old = orphan(settings.resolved_blob_dir)
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))
        in_flight = young.with_name(young.name + ".tmp")
        in_flight.write_bytes(b"being written")
        service.start()
        assert young.exists() and in_flight.exists()
        assert not old.exists()

    def test_with_the_lock_every_orphan_goes(self, fresh_server: ServerProcess) -> None:
        blob_dir = fresh_server.data_dir / "blobs"
        leftover = orphan(blob_dir)
        torn = leftover.with_name(new_blob_key() + ".tmp")
        torn.write_bytes(b"torn")
        fresh_server.restart()
        assert not leftover.exists() and not torn.exists()
