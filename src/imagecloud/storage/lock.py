"""One process at a time owns a data directory (the SQLite file when the database is the embedded one, the
local blob folder, the stored previews and the saved search index), whatever the database.

A server keeps its search index in memory and, when it starts, deletes blob files that no row points to
(left by a crash between writing the file and committing the row). Both assume that no other process is
adding targets to the same directory: a second server would delete the first one's adds in flight and
the two indexes would drift apart. So a server (and the in-process import) holds an exclusive ``flock``
on ``imagecloud.lock`` in the data directory for its whole life; the file names the holder so that the
one refused can say who it is.

``flock`` (not ``fcntl`` record locks) because it belongs to the open file, not to the process: closing
some other descriptor of the file never drops it, and the kernel drops it when the holder dies, however
it dies, so a SIGKILL leaves no stale lock behind.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_FILE = "imagecloud.lock"

# Several servers on one set of data is the cluster deployment, not the embedded one.
CLUSTER_HINT = (
    "An embedded data directory serves one server; several servers need a shared database and blob "
    "store (see the README, 'One server per data directory')."
)


class DataDirInUse(Exception):
    """Another live process holds the data directory."""

    def __init__(self, data_dir: Path, holder: dict[str, object] | None) -> None:
        self.data_dir = data_dir
        self.holder = holder or {}
        super().__init__(f"{data_dir} is in use by {describe(self.holder)}. {CLUSTER_HINT}")


def describe(holder: dict[str, object]) -> str:
    """``process 123 on host (imagecloud serve, since 2026-01-02T03:04:05Z)`` from what the holder wrote."""
    if not holder:
        return "another process"
    text = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
    details = [str(value) for value in (holder.get("command"), holder.get("started")) if value]
    if len(details) == 2:
        return f"{text} ({details[0]}, since {details[1]})"
    return f"{text} ({details[0]})" if details else text


class DataDirLock:
    """An exclusive lock on a data directory, held until :meth:`release` or the end of the process."""

    def __init__(self, data_dir: Path, command: str) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def covers(self, path: Path) -> bool:
        """Whether ``path`` lies inside the locked directory, so that no other process writes there."""
        return self.held and path.resolve().is_relative_to(self.data_dir.resolve())

    def acquire(self) -> DataDirLock:
        """Take the lock or raise :class:`DataDirInUse` at once (never waits)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DataDirInUse(self.data_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        # Processes forked from the holder (e.g. a multiprocessing pool) share the open file and with it
        # the lock; the holder's pid in the file is what the refusal names.
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Emptied first, so a file left behind never names a process that no longer holds it.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, object] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        found = json.loads(raw.decode())
    except (OSError, ValueError):
        return None  # the holder has not written it yet
    return found if isinstance(found, dict) else None
