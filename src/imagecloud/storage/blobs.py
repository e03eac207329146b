"""Blob store for original uploads.

Keys are random hex strings made by the service, never user input, so no caller can steer a file path.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"[0-9a-f]{32}")


def is_blob_key(key: str) -> bool:
    """Whether ``key`` has the form of a key this store makes (so it can name a file safely)."""
    return _KEY.fullmatch(key) is not None


def new_blob_key() -> str:
    return secrets.token_hex(16)


class BlobStoreUnavailable(Exception):
    """The blob store did not answer as it should (network, credentials, bucket): the operation did not
    happen, and may succeed when retried."""


class BlobStore(Protocol):
    """Where originals are kept: :class:`LocalBlobStore` (embedded default) or ``s3blobs.S3BlobStore``.

    ``get`` and ``modified`` raise FileNotFoundError for a key with nothing stored, whichever the store;
    a store that cannot be reached raises :class:`BlobStoreUnavailable` (or, for a local folder, OSError).
    """

    @property
    def backend(self) -> str:
        """What keeps the originals ("local" or "s3"), as ``/readyz`` names it."""
        ...

    @property
    def shared(self) -> bool:
        """Whether other processes may write here without holding this data directory's lock."""
        ...

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def keys(self) -> Iterator[str]: ...
    def modified(self, key: str) -> float: ...
    def remove_temporaries(self, older_than: float) -> int: ...
    def reachable(self) -> bool: ...


class LocalBlobStore:
    """Files under one folder, sharded by the first two hex digits to keep directories small."""

    backend = "local"
    # Inside the data directory by default, written only by the process holding its lock.
    shared = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not is_blob_key(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # Write, fsync, then rename: a crash leaves either no file or the whole file, never a torn one.
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def path(self, key: str) -> Path:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for entry in self._entries():
            if is_blob_key(entry.name):
                yield entry.name

    def modified(self, key: str) -> float:
        """When the file was written (seconds since the epoch); FileNotFoundError if it is gone."""
        return self._path(key).stat().st_mtime

    def remove_temporaries(self, older_than: float) -> int:
        """Delete files of writes cut short (``*.tmp``) last touched before ``older_than`` (epoch seconds).

        A younger one may be a write in progress in another process, so it stays.
        """
        removed = 0
        for entry in self._entries():
            if entry.name.endswith(".tmp"):
                try:
                    if entry.stat().st_mtime < older_than:
                        entry.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass  # finished (renamed) or removed meanwhile
        return removed

    def reachable(self) -> bool:
        return self.root.is_dir()

    def _entries(self) -> Iterator[Path]:
        for shard in self.root.iterdir():
            if shard.is_dir():
                yield from shard.iterdir()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
