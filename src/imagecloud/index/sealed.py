"""The exact index's sealed (IVF) segments on disk, so a restart reads them instead of rebuilding them.

Building the IVF segments of a 10,000-target channel (10 million descriptor rows: k-means, then assigning
every row to its list) is most of a cold start. The segments are immutable once built, so each is written
once, when it is sealed, merged or compacted, under a name of its own; a manifest names the files that make
up the current index and is replaced atomically after they are on disk (written ahead, fsynced). Files the
manifest no longer names are deleted after it is replaced.

The database stays the source of truth. Each saved segment carries, per entry, the target id and a
fingerprint of the stored features (CRC-32 and length of the blob) it was built from; at start the exact
index keeps a saved entry only if the database still holds that target with features of the same
fingerprint, marks the others removed, and indexes whatever the saved segments lack. A missing, stale or
unreadable save therefore costs a rebuild of what it does not cover, never a wrong answer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faiss
import numpy as np

from imagecloud.index.binary import SealedScope, SealedSegment, next_serial

log = logging.getLogger(__name__)

# 3: row ids carry the keypoint geometry (index.binary). Format 2 was written for a while with plain entry
# ids; reading those as format 3 would misplace every row, so they are rebuilt like any other old format.
FORMAT = 3
MANIFEST = "manifest.json"


def fingerprint(blob: bytes) -> int:
    """What identifies one version of a target's stored features: length and CRC-32 (fits an int64)."""
    return (len(blob) << 32) | zlib.crc32(blob)


@dataclass(frozen=True, eq=False)
class Labels:
    """Per entry of a segment: the target and the fingerprint of the features it was built from."""

    entries: np.ndarray  # int64
    targets: np.ndarray  # int64
    fingerprints: np.ndarray  # int64


@dataclass(frozen=True, eq=False)
class SavedScope:
    sealed: SealedScope
    labels: tuple[Labels, ...]  # one per segment, in the same order


class SegmentStore:
    """Writes and reads the sealed segments of every scope in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()  # one save at a time
        self._names: dict[int, str] = {}  # serial of a segment or quantizer -> its file, once written

    def save(self, scopes: dict[int, SealedScope], label: dict[int, tuple[int, int]]) -> None:
        """Write what is not on disk yet, then the manifest, then delete files it no longer names.

        ``label`` maps each entry to (target id, features fingerprint); entries it lacks (replaced or
        removed while this ran) are saved with target -1, which no database row matches.
        """
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest: dict[str, object] = {"format": FORMAT, "scopes": {}}
            scope_entries: dict[str, object] = {}
            written: dict[int, str] = {}
            for scope, sealed in scopes.items():
                write_quantizer = partial(_write_faiss, sealed.quantizer)
                quantizer = self._write(sealed.quantizer_serial, written, write_quantizer)
                segments = [
                    self._write(seg.serial, written, partial(_write_segment, seg, label))
                    for seg in sealed.segments
                ]
                scope_entries[str(scope)] = {
                    "quantizer": quantizer,
                    "nlist": sealed.nlist,
                    "trained_rows": sealed.trained_rows,
                    "top_probe": sealed.top_probe,
                    "segments": segments,
                }
            manifest["scopes"] = scope_entries
            _atomic_write(self.folder / MANIFEST, json.dumps(manifest).encode())
            self._names = written
            keep = set(written.values())
            for path in self.folder.iterdir():
                stem = path.name.split(".")[0]
                if path.name != MANIFEST and stem not in keep:
                    path.unlink(missing_ok=True)

    def _write(self, serial: int, written: dict[int, str], write: Callable[[Path], None]) -> str:
        """The file name of an immutable object, written under a new name the first time it is saved."""
        name = self._names.get(serial)
        if name is None:
            name = uuid.uuid4().hex
            write(self.folder / name)
        written[serial] = name
        return name

    def read(self) -> dict[int, SavedScope]:
        """The saved scopes; empty when there is no save or it cannot be read (the caller rebuilds)."""
        path = self.folder / MANIFEST
        if not path.exists():
            return {}
        try:
            manifest = json.loads(path.read_text())
            if manifest.get("format") != FORMAT:
                return {}
            out: dict[int, SavedScope] = {}
            names: dict[int, str] = {}
            for scope, entry in manifest["scopes"].items():
                quantizer = faiss.read_index_binary(str(self.folder / f"{entry['quantizer']}.faiss"))
                if not isinstance(quantizer, faiss.IndexBinaryFlat):
                    raise ValueError(f"quantizer {entry['quantizer']} is a {type(quantizer).__name__}")
                quantizer_serial = next_serial()
                names[quantizer_serial] = entry["quantizer"]
                segments: list[SealedSegment] = []
                labels: list[Labels] = []
                for name in entry["segments"]:
                    seg, lab = _read_segment(self.folder / name)
                    if seg.index.nlist != entry["nlist"]:
                        raise ValueError(f"segment {name} has {seg.index.nlist} lists, not {entry['nlist']}")
                    names[seg.serial] = name
                    segments.append(seg)
                    labels.append(lab)
                nlist, trained = int(entry["nlist"]), int(entry["trained_rows"])
                # Saves from before two-level searches existed put every row in its nearest centroid's list.
                top_probe = int(entry.get("top_probe", 0))
                sealed = SealedScope(quantizer, quantizer_serial, nlist, trained, tuple(segments), top_probe)
                out[int(scope)] = SavedScope(sealed, tuple(labels))
        except Exception:  # any damage: the database rebuilds what the save would have given
            log.exception("saved index in %s unreadable; rebuilding from the database", self.folder)
            return {}
        with self._lock:
            self._names = names
        return out


def _write_segment(seg: SealedSegment, label: dict[int, tuple[int, int]], path: Path) -> None:
    entries = np.fromiter(seg.spans, np.int64, len(seg.spans))
    spans = np.array([seg.spans[int(e)] for e in entries], np.int64).reshape(-1, 2)
    known = [label.get(int(e), (-1, 0)) for e in entries]
    targets = np.array([k[0] for k in known], np.int64)
    prints = np.array([k[1] for k in known], np.int64)
    tmp = path.with_name(path.name + ".npz.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, entries=entries, spans=spans, targets=targets, fingerprints=prints)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path.with_name(path.name + ".npz"))
    _write_faiss(seg.index, path)


def _read_segment(path: Path) -> tuple[SealedSegment, Labels]:
    index = faiss.read_index_binary(str(path.with_name(path.name + ".faiss")))
    if not isinstance(index, faiss.IndexBinaryIVF):
        raise ValueError(f"segment {path.name} is a {type(index).__name__}")
    with np.load(path.with_name(path.name + ".npz")) as z:
        entries, spans = z["entries"], z["spans"]
        labels = Labels(entries, z["targets"], z["fingerprints"])
    span_map = {int(e): (int(a), int(b)) for e, (a, b) in zip(entries.tolist(), spans.tolist(), strict=True)}
    if sum(b - a for a, b in span_map.values()) != index.ntotal:
        raise ValueError(f"segment {path.name}: rows do not add up")
    return SealedSegment(next_serial(), index, span_map), labels


def _write_faiss(index: faiss.IndexBinary, path: Path) -> None:
    final = path.with_name(path.name + ".faiss")
    tmp = final.with_name(final.name + ".tmp")
    faiss.write_index_binary(index, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
