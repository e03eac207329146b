"""Rendered previews of stored originals: one JPEG file per (blob key, size), in a folder of their own.

They are made when a target is added (the sizes the console shows) or, for other sizes and for targets
stored without them, the first time one is asked for; after that serving one is reading a file. A lost or
torn preview costs only a new rendering, so writes are atomic (rename) but not fsync'd.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from imagecloud.storage.blobs import is_blob_key


class ThumbnailStore:
    """``root/<2 hex>/<blob key>-<size>.jpg``, sharded like the blob store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, size: int) -> Path:
        if not is_blob_key(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / f"{key}-{int(size)}.jpg"

    def get(self, key: str, size: int) -> bytes | None:
        try:
            return self._path(key, size).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, size: int, data: bytes) -> None:
        path = self._path(key, size)
        path.parent.mkdir(exist_ok=True)
        # A name of its own per writer: two requests may render the same preview at once.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{key}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        shard = self._path(key, 0).parent
        if not shard.is_dir():
            return
        for path in shard.glob(f"{key}-*.jpg"):
            path.unlink(missing_ok=True)

    def keys(self) -> Iterator[tuple[str, float]]:
        """The blob key and write time (epoch seconds) of every stored preview (a key once per size)."""
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for entry in shard.glob("*.jpg"):
                key = entry.name.partition("-")[0]
                try:
                    written = entry.stat().st_mtime
                except FileNotFoundError:
                    continue  # removed meanwhile
                if is_blob_key(key):
                    yield key, written

    def remove_temporaries(self, older_than: float) -> int:
        removed = 0
        for entry in self.root.glob("*/*.tmp"):
            try:
                if entry.stat().st_mtime < older_than:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
