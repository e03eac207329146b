"""The local blob store: whole files or none, keys that cannot steer a path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagecloud.storage import LocalBlobStore
from imagecloud.storage.blobs import new_blob_key


def test_put_get_delete_roundtrip(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    key = new_blob_key()
    data = bytes(range(256)) * 10
    store.put(key, data)
    assert store.get(key) == data
    assert list(store.keys()) == [key]
    assert store.path(key) == tmp_path / "blobs" / key[:2] / key
    store.delete(key)
    assert list(store.keys()) == []
    with pytest.raises(FileNotFoundError):
        store.get(key)


def test_delete_of_a_missing_key_is_quiet(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path).delete(new_blob_key())


def test_put_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = new_blob_key()
    store.put(key, b"first version, longer")
    store.put(key, b"second")
    assert store.get(key) == b"second"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [key]


def test_keys_are_fresh_and_hex(tmp_path: Path) -> None:
    keys = {new_blob_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(k) == 32 and set(k) <= set("0123456789abcdef") for k in keys)


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "g" * 32, "0" * 31, "0" * 33, "/" + "0" * 31, "0" * 32 + "\n", ""]
)
def test_non_keys_never_become_paths(tmp_path: Path, bad: str) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ValueError):
        store.put(bad, b"x")
    with pytest.raises(ValueError):
        store.get(bad)
    with pytest.raises(ValueError):
        store.delete(bad)


def test_keys_skips_strangers_and_temporaries(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = new_blob_key()
    store.put(key, b"kept")
    shard = tmp_path / key[:2]
    (shard / f"{key[:-1]}0.tmp").write_bytes(b"torn write")
    (shard / "README").write_text("not a blob")
    (tmp_path / "stray-file").write_text("not a shard")
    assert list(store.keys()) == [key]
    assert (shard / "README").exists()


def test_only_temporaries_older_than_the_cutoff_are_removed(tmp_path: Path) -> None:
    """A young one may be another process's write in progress."""
    store = LocalBlobStore(tmp_path)
    key = new_blob_key()
    store.put(key, b"kept")
    old, young = tmp_path / key[:2] / "old.tmp", tmp_path / key[:2] / "young.tmp"
    old.write_bytes(b"torn write")
    young.write_bytes(b"being written")
    os.utime(old, (1000.0, 1000.0))
    assert store.remove_temporaries(older_than=2000.0) == 1
    assert not old.exists() and young.exists()
    assert store.get(key) == b"kept"
