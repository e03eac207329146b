"""The exact index: every descriptor of every target, compared directly, with its features kept in RAM.

Recalls the most, and costs the most RAM (~32 KB of descriptors plus the features per target), so it
serves scopes up to some ten thousand targets (:mod:`imagecloud.index.tiered`). Candidates are ranked by
descriptor votes (:class:`imagecloud.index.binary.BinaryVotingIndex`), which add up over disjoint sets of
photo descriptors: a search can vote in rounds (:class:`imagecloud.index.base.VotingIndex`).

The voting structure is keyed by *entries*, numbers never reused: re-adding a target gives it a new entry,
and the old one is retired only once the new one is searchable, so a search never sees the target
missing. Entries stay inside this module; callers see target ids.

With a folder, the IVF segments are written there as they are sealed (:mod:`imagecloud.index.sealed`) and
reused at the next :meth:`ExactIndex.load` for every target whose stored features are the ones they were
built from.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imagecloud.index.base import Candidate
from imagecloud.index.binary import Ballot, BinaryVotingIndex, IndexSettings, keypoint_geometry
from imagecloud.index.sealed import SavedScope, SegmentStore, fingerprint
from imagecloud.vision.features import Features

log = logging.getLogger(__name__)

# RAM per keypoint of the features kept for verification (points, descriptor, angle, octave).
_FEATURE_BYTES = 42


@dataclass(frozen=True, eq=False, slots=True)  # one per target: no per-object dict
class _Entry:
    scope: int
    target: int
    features: Features | None  # None where the index keeps no features (:meth:`ExactIndex._kept`)
    fingerprint: int = 0  # of the stored features blob: ties saved index rows to one version of a target


class ExactIndex:
    """Thread-safe exact index of targets by scope (see the module docstring)."""

    def __init__(self, settings: IndexSettings | None = None, folder: Path | None = None) -> None:
        self.settings = settings or IndexSettings()
        self._store = SegmentStore(folder) if folder is not None else None
        self._index = BinaryVotingIndex(
            self.settings, on_sealed=self.save if self._store is not None else None
        )
        self._saving: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self.restored = 0  # targets the last load took from the saved segments instead of indexing them
        self._lock = threading.Lock()  # guards the two maps below; never held during index work
        self._entries: dict[int, _Entry] = {}
        self._current: dict[int, int] = {}  # target -> its entry
        self._sizes: dict[int, int] = {}  # targets per scope
        self._serial = itertools.count(1)

    # ----------------------------------------------------------------------------- writers
    def add(self, scope: int, target: int, features: bytes) -> None:
        feats = Features.from_bytes(features)
        entry = next(self._serial)
        with self._lock:
            old = self._current.get(target)
            self._entries[entry] = _Entry(scope, target, self._kept(feats), fingerprint(features))
        self._index.add(scope, entry, *self._indexed(feats))
        with self._lock:
            # A replaced image (same id) is retired only once its successor is searchable.
            self._current[target] = entry
            self._count(scope, old)
        if old is not None:
            self._retire(old)

    def _count(self, scope: int, old: int | None) -> None:
        """Called with the lock held: a target entered ``scope``, replacing entry ``old`` if not None."""
        previous = self._entries.get(old) if old is not None else None
        if previous is not None:
            self._sizes[previous.scope] -= 1
        self._sizes[scope] = self._sizes.get(scope, 0) + 1

    def remove(self, target: int) -> None:
        with self._lock:
            entry = self._current.pop(target, None)
            if entry is not None:
                self._sizes[self._entries[entry].scope] -= 1
        if entry is not None:
            self._retire(entry)

    def _retire(self, entry: int) -> None:
        with self._lock:
            e = self._entries.get(entry)
        if e is not None:
            self._index.remove(e.scope, entry)
        with self._lock:
            self._entries.pop(entry, None)

    def drop_scope(self, scope: int) -> None:
        with self._lock:
            gone = [t for t, entry in self._current.items() if self._entries[entry].scope == scope]
            for t in gone:
                self._entries.pop(self._current.pop(t), None)
            self._sizes.pop(scope, None)
        self._index.drop_scope(scope)
        self._save_soon()

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert at start-up.

        With a folder, rows of the saved segments are reused for every target whose stored features are the
        ones they were built from; only the rest is indexed (see ``index.sealed``).
        """
        saved = self._store.read() if self._store is not None else {}
        claims = _claims(saved)
        rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        # scope -> saved entry -> (descriptors, geometry)
        reused: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        retired: list[int] = []
        with self._lock:
            # Entry numbers continue after every saved one, claimed or not: the segments store them, and an
            # unclaimed one stays there as removed, which must not hide a new entry of the same number.
            top = max(
                (int(lab.entries.max()) for sv in saved.values() for lab in sv.labels if len(lab.entries)),
                default=0,
            )
            self._serial = itertools.count(max(top + 1, next(self._serial)))
            for scope, target, blob in items:
                feats = Features.from_bytes(blob)
                print_ = fingerprint(blob)
                old = self._current.get(target)
                if old is not None:
                    retired.append(old)
                claim = claims.pop((scope, target), None)
                if claim is not None and claim[1] == print_ and old is None:
                    entry = claim[0]
                    reused.setdefault(scope, {})[entry] = self._indexed(feats)
                else:
                    entry = next(self._serial)
                    rows.append((scope, entry, *self._indexed(feats)))
                self._count(scope, old)
                self._entries[entry] = _Entry(scope, target, self._kept(feats), print_)
                self._current[target] = entry
        restored = self._restore(saved, reused, rows)
        self._index.load(r for r in rows if r[0] not in restored)
        for scope in restored:
            self._index.add_rows(scope, ((e, d, g) for sc, e, d, g in rows if sc == scope))
        for old in retired:
            self._retire(old)
        self._save_soon()

    def _restore(
        self,
        saved: dict[int, SavedScope],
        reused: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]],
        rows: list[tuple[int, int, np.ndarray, np.ndarray]],
    ) -> set[int]:
        """Put back the saved segments still worth keeping; returns the scopes restored.

        A segment of which too many rows no longer belong to current targets is not kept (compacting it
        would rebuild it anyway): its current targets join ``rows`` and are indexed afresh.
        """
        keep_share = 1.0 - self.settings.compact_dead_fraction
        restored: set[int] = set()
        count = 0
        for scope, scope_saved in saved.items():
            live = reused.get(scope, {})
            kept = []
            # Rows put in their lists by another kind of quantizer search are indexed afresh.
            usable = self._index.assigned_like(scope_saved.sealed)
            for seg in scope_saved.sealed.segments:
                live_rows = sum(b - a for e, (a, b) in seg.spans.items() if e in live)
                if usable and live_rows > 0 and live_rows >= keep_share * seg.index.ntotal:
                    kept.append(seg)
                else:
                    rows.extend((scope, e, *live.pop(e)) for e in seg.spans if e in live)
            if not kept:
                continue
            dead = frozenset(e for seg in kept for e in seg.spans if e not in live)
            self._index.restore(scope, replace(scope_saved.sealed, segments=tuple(kept)), dead)
            restored.add(scope)
            count += sum(1 for seg in kept for e in seg.spans if e in live)
        self.restored = count
        return restored

    # ----------------------------------------------------------------------------- what is kept
    def _indexed(self, feats: Features) -> tuple[np.ndarray, np.ndarray]:
        """The descriptors of a target that vote for it and their keypoints' geometry."""
        kept = self._voting_keypoints(feats)
        return feats.descriptors[kept], keypoint_geometry(feats.angles[kept], feats.octaves[kept])

    def _voting_keypoints(self, feats: Features) -> slice | np.ndarray:
        """Which keypoints of a target vote for it: all of them (a slice, so no copy is made)."""
        return slice(None)

    def _kept(self, feats: Features) -> Features | None:
        """What of a target's features stays in RAM for verification: all of them."""
        return feats

    # ----------------------------------------------------------------------------- persistence
    def save(self) -> None:
        """Write the sealed segments not on disk yet, and a manifest naming the current ones."""
        if self._store is None:
            return
        try:
            # One save at a time, each taking its view of the index inside: an older view written after a
            # newer one would delete the newer one's files.
            with self._save_lock:
                with self._lock:
                    labels = {entry: (e.target, e.fingerprint) for entry, e in self._entries.items()}
                self._store.save(self._index.sealed(), labels)
        except Exception:  # the saved index is only a shortcut: indexing goes on, a restart rebuilds more
            log.exception("saving the exact index failed")

    def restore(self, live: np.ndarray) -> np.ndarray:
        """All of ``live``: every target's features are kept in RAM, so :meth:`load` needs them all (it
        reuses the saved segments' rows as the features come in)."""
        return np.asarray(live, np.int64)

    def _save_soon(self) -> None:
        """Save in the background: writing a large segment must not delay start-up or a request."""
        if self._store is None:
            return
        thread = threading.Thread(target=self.save, daemon=True, name="index-save")
        with self._lock:
            self._saving = thread
        thread.start()

    def wait_idle(self) -> None:
        """Block until background upkeep is done."""
        self._index.wait_idle()

    def wait_saved(self) -> None:
        """Block until upkeep and the last background save are done (tests, benchmarks)."""
        self._index.wait_idle()
        with self._lock:
            saving = self._saving
        if saving is not None:
            saving.join()

    # ----------------------------------------------------------------------------- readers
    def vote(self, descriptors: np.ndarray, geometry: np.ndarray, scopes: Sequence[int]) -> Ballot:
        return self._index.ballot(descriptors, scopes, geometry)

    def ranked(self, ballot: Ballot, limit: int) -> list[Candidate]:
        """Most consistent votes first (see ``index.binary``), then most votes, ties to the earlier indexed;
        an entry retired meanwhile is left out."""
        top = ballot.top(limit)
        out: list[Candidate] = []
        with self._lock:
            for cand in top:
                e = self._entries.get(cand.entry)
                if e is not None:
                    out.append(Candidate(e.target, e.scope, cand.consistent, cand.votes))
        return out

    def search(self, photo: Features, scopes: Sequence[int], limit: int) -> list[Candidate]:
        geometry = keypoint_geometry(photo.angles, photo.octaves)
        return self.ranked(self.vote(photo.descriptors, geometry, scopes), limit)

    @property
    def min_votes(self) -> float:
        return self.settings.min_votes

    def features(self, targets: Sequence[int]) -> dict[int, Features]:
        out: dict[int, Features] = {}
        with self._lock:
            for t in targets:
                entry = self._current.get(t)
                feats = self._entries[entry].features if entry is not None else None
                if feats is not None:
                    out[t] = feats
        return out

    def holds(self, target: int) -> bool:
        with self._lock:
            return target in self._current

    def targets(self) -> list[tuple[int, int, Features]]:
        """``(scope, target, features)`` of every target held (to train a vocabulary on, for instance)."""
        with self._lock:
            return [(e.scope, e.target, e.features) for e in self._entries.values() if e.features is not None]

    def fingerprints(self, scope: int) -> dict[int, int]:
        """Target id -> fingerprint of the features blob it was added with, for every target of ``scope``."""
        with self._lock:
            return {
                t: self._entries[entry].fingerprint
                for t, entry in self._current.items()
                if self._entries[entry].scope == scope
            }

    def size(self, scope: int) -> int:
        """Targets held in ``scope``."""
        with self._lock:
            return self._sizes.get(scope, 0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._current)

    def memory_bytes(self) -> int:
        """Approximate RAM of the voting structure plus the features kept for verification."""
        with self._lock:
            feats = sum(
                len(e.features) * _FEATURE_BYTES for e in self._entries.values() if e.features is not None
            )
        return feats + self._index.memory_bytes()

    @property
    def voting(self) -> BinaryVotingIndex:
        """The voting structure itself (segment diagnostics for tests and benchmarks)."""
        return self._index


def _claims(saved: dict[int, SavedScope]) -> dict[tuple[int, int], tuple[int, int]]:
    """(scope, target id) -> (entry, features fingerprint) of the saved rows; the newest entry of a target
    wins (an older one was being replaced when the save was made)."""
    claims: dict[tuple[int, int], tuple[int, int]] = {}
    for scope, scope_saved in saved.items():
        for labels in scope_saved.labels:
            triples = zip(
                labels.entries.tolist(), labels.targets.tolist(), labels.fingerprints.tolist(), strict=True
            )
            for entry, target, print_ in triples:
                if target < 0:
                    continue
                known = claims.get((scope, target))
                if known is None or known[0] < entry:
                    claims[(scope, target)] = (entry, print_)
    return claims
