"""FAISS binary-descriptor index with descriptor voting, partitioned by scope.

Concurrency model (why there is no global lock held during a search):

* Each scope is an immutable *snapshot*: a tuple of immutable segments plus a frozen set of dead
  entries. Writers build a new snapshot and swap the reference under a short lock; readers grab
  the current reference and search it without any lock. A search therefore never waits for an add,
  and an add never waits for a search.
* ``add`` puts a target into its own small exact (flat) segment; small segments are merged when
  there are too many of them. ``remove`` only adds a tombstone, which every search filters, so a
  removed entry cannot be returned once ``remove`` has returned.
* When the exact segments hold too many rows to scan quickly, a background thread rebuilds one
  inverted-file (IVF) segment from the live rows and swaps it in; tombstones and adds that happened
  meanwhile stay valid because entries are never reused.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

BITS = 256

# Parallelism comes from the service's worker pool. FAISS's own OpenMP threads busy-wait when the cores are
# already busy, which was measured to make an IVF build ~80x slower (6.8 s instead of 0.09 s) on 2 cores.
faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class IndexSettings:
    neighbours: int = 3  # k nearest stored descriptors per query descriptor (more k = more noise votes)
    max_distance: int = 56  # a neighbour further than this (of 256 bits) casts no vote
    ivf_min_rows: int = 60_000  # below this an exact scan is cheap enough
    flat_max_rows: int = 40_000  # exact rows tolerated next to an IVF segment before rebuilding
    max_small_segments: int = 16  # merge per-add segments beyond this
    # Lists scanned per query descriptor; cost is linear in it. 8 lost up to 3 points of recall on the
    # development photos depending on how k-means happened to partition the enrolled set; 12 and 16 did
    # not, and 12 kept the real-photo p50 at 54 ms where 16 took 65 ms (1,071 targets, same machine).
    nprobe: int = 12
    max_lists: int = 1024  # more lists train slowly (k-means) and gain little at nprobe ~12
    train_per_list: int = 40  # training sample = nlist * this (FAISS wants >= 39)


@dataclass(frozen=True)
class Candidate:
    scope: int
    entry: int
    votes: float


@dataclass(frozen=True, eq=False)
class Ballot:
    """Votes per entry from a set of query descriptors."""

    entries: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted, unique
    votes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    scope_of: dict[int, int] = field(default_factory=dict)

    def __add__(self, other: Ballot) -> Ballot:
        """Votes of two disjoint sets of query descriptors."""
        if len(other.entries) == 0:
            return self
        if len(self.entries) == 0:
            return other
        entries, inverse = np.unique(np.concatenate([self.entries, other.entries]), return_inverse=True)
        votes = np.bincount(inverse, np.concatenate([self.votes, other.votes]), minlength=len(entries))
        return Ballot(entries, votes, {**self.scope_of, **other.scope_of})

    def top(self, limit: int) -> list[Candidate]:
        """The ``limit`` best-voted entries, most votes first (ties: lower entry first)."""
        order = np.argsort(-self.votes, kind="stable")[:limit]
        return [
            Candidate(self.scope_of[int(self.entries[i])], int(self.entries[i]), float(self.votes[i]))
            for i in order
            if self.votes[i] > 0
        ]


@dataclass(frozen=True, eq=False)
class _Segment:
    index: object  # faiss.IndexBinary (flat or IVF); read-only once published
    entries: np.ndarray  # int64 per row
    rows_by_entry: dict[int, tuple[int, int]] = field(default_factory=dict)  # entry -> (start, stop)
    approximate: bool = False
    keepalive: object = None  # the IVF's coarse quantizer, which FAISS does not own from Python

    @property
    def rows(self) -> int:
        return int(self.entries.shape[0])


@dataclass(frozen=True)
class _Snapshot:
    segments: tuple[_Segment, ...] = ()
    dead: frozenset[int] = frozenset()


class BinaryVotingIndex:
    """Thread-safe per-scope index of 256-bit descriptors answering 'which entries look similar'."""

    def __init__(self, settings: IndexSettings | None = None) -> None:
        self.settings = settings or IndexSettings()
        self._swap = threading.Lock()  # guards the snapshot dict; held only for reference swaps
        self._writers: dict[int, threading.Lock] = {}  # serialises writers of one scope
        self._snapshots: dict[int, _Snapshot] = {}
        self._rebuilding: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._descriptors: dict[int, tuple[int, np.ndarray]] = {}  # entry -> (scope, descriptors)

    # ----------------------------------------------------------------------------- writers
    def _writer(self, scope: int) -> threading.Lock:
        with self._swap:
            lock = self._writers.get(scope)
            if lock is None:
                lock = self._writers[scope] = threading.Lock()
            return lock

    def add(self, scope: int, entry: int, descriptors: np.ndarray) -> None:
        desc = np.ascontiguousarray(descriptors, dtype=np.uint8)
        segment = _flat_segment([(entry, desc)])
        with self._writer(scope):
            with self._swap:
                self._descriptors[entry] = (scope, desc)
                snap = self._snapshots.get(scope, _Snapshot())
                self._snapshots[scope] = _Snapshot((*snap.segments, segment), snap.dead)
            self._maintain(scope)

    def remove(self, scope: int, entry: int) -> None:
        with self._writer(scope), self._swap:
            self._descriptors.pop(entry, None)
            snap = self._snapshots.get(scope)
            if snap is not None:
                self._snapshots[scope] = _Snapshot(snap.segments, snap.dead | {entry})

    def drop_scope(self, scope: int) -> None:
        with self._writer(scope), self._swap:
            snap = self._snapshots.pop(scope, None)
            if snap is not None:
                for seg in snap.segments:
                    for e in seg.rows_by_entry:
                        self._descriptors.pop(e, None)

    def load(self, items: Iterable[tuple[int, int, np.ndarray]]) -> None:
        """Bulk insert; builds one segment per scope directly instead of many small ones."""
        by_scope: dict[int, list[tuple[int, np.ndarray]]] = {}
        for scope, entry, desc in items:
            by_scope.setdefault(scope, []).append((entry, np.ascontiguousarray(desc, dtype=np.uint8)))
        for scope, rows in by_scope.items():
            with self._writer(scope):
                with self._swap:
                    for entry, desc in rows:
                        self._descriptors[entry] = (scope, desc)
                    snap = self._snapshots.get(scope, _Snapshot())
                    live = self._live_rows(snap)
                total = sum(len(d) for _, d in live) + sum(len(d) for _, d in rows)
                segment = self._build(live + rows, approximate=total >= self.settings.ivf_min_rows)
                with self._swap:
                    self._snapshots[scope] = _Snapshot((segment,), frozenset())

    def _live_rows(self, snap: _Snapshot) -> list[tuple[int, np.ndarray]]:
        out = []
        for seg in snap.segments:
            for e in seg.rows_by_entry:
                if e not in snap.dead and e in self._descriptors:
                    out.append((e, self._descriptors[e][1]))
        return out

    def _maintain(self, scope: int) -> None:
        """Called with the scope's writer lock held: keep the number and size of exact segments small."""
        s = self.settings
        snap = self._snapshots[scope]
        small = [seg for seg in snap.segments if not seg.approximate]
        flat_rows = sum(seg.rows for seg in small)
        big = [seg for seg in snap.segments if seg.approximate]
        if flat_rows >= (s.flat_max_rows if big else s.ivf_min_rows) and scope not in self._rebuilding:
            self._rebuilding.add(scope)
            thread = threading.Thread(
                target=self._rebuild, args=(scope,), daemon=True, name=f"index-rebuild-{scope}"
            )
            with self._swap:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        if len(small) > s.max_small_segments:
            with self._swap:
                rows = [
                    (e, self._descriptors[e][1])
                    for seg in small
                    for e in seg.rows_by_entry
                    if e not in snap.dead and e in self._descriptors
                ]
            merged = _flat_segment(rows)
            with self._swap:
                current = self._snapshots[scope]
                segments = (*(seg for seg in current.segments if seg not in small), merged)
                self._snapshots[scope] = _Snapshot(segments, _still_present(current.dead, segments))

    def _rebuild(self, scope: int) -> None:
        swapped = False
        try:
            with self._swap:
                snap = self._snapshots.get(scope)
                if snap is None:
                    return
                rows = self._live_rows(snap)
            segment = self._build(rows, approximate=True)  # slow part: no lock held
            with self._writer(scope):
                with self._swap:
                    current = self._snapshots.get(scope)
                if current is None:
                    return
                # Segments merged while the rebuild ran may repeat rows the new IVF already holds; keep
                # only the rows it does not cover, or the exact part would keep growing.
                covered = segment.rows_by_entry
                with self._swap:
                    pending = [
                        (e, self._descriptors[e][1])
                        for seg in current.segments
                        if seg not in snap.segments
                        for e in seg.rows_by_entry
                        if e not in covered and e not in current.dead and e in self._descriptors
                    ]
                segments = (segment, _flat_segment(pending)) if pending else (segment,)
                with self._swap:
                    self._snapshots[scope] = _Snapshot(segments, _still_present(current.dead, segments))
                    self._rebuilding.discard(scope)
                    swapped = True
                # Adds that piled up during a long rebuild may already call for the next one.
                self._maintain(scope)
        finally:
            if not swapped:
                with self._swap:
                    self._rebuilding.discard(scope)

    def _build(self, rows: list[tuple[int, np.ndarray]], *, approximate: bool) -> _Segment:
        if not approximate:
            return _flat_segment(rows)
        s = self.settings
        data, entries, ranges = _stack(rows)
        nlist = int(min(s.max_lists, max(64, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(len(data))))))))
        quantizer = faiss.IndexBinaryFlat(BITS)
        ivf = faiss.IndexBinaryIVF(quantizer, BITS, nlist)
        rng = np.random.default_rng(0)
        sample = (
            data
            if len(data) <= nlist * s.train_per_list
            else data[rng.choice(len(data), nlist * s.train_per_list, replace=False)]
        )
        ivf.train(sample)
        ivf.add(data)
        ivf.nprobe = s.nprobe
        return _Segment(ivf, entries, ranges, approximate=True, keepalive=quantizer)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until background rebuilds finish (for tests, benchmarks and orderly shutdown).

        A finished rebuild may start the next one, so this waits until no rebuild thread is alive.
        """
        while True:
            with self._swap:
                threads = [t for t in self._threads if t.is_alive()]
            if not threads:
                return
            for t in threads:
                t.join(timeout)
            if timeout is not None:
                return

    def segment_rows(self, scope: int) -> tuple[int, int, int]:
        """(exact rows, approximate rows, distinct entries) in a scope's current snapshot."""
        with self._swap:
            snap = self._snapshots.get(scope, _Snapshot())
        exact = sum(seg.rows for seg in snap.segments if not seg.approximate)
        approximate = sum(seg.rows for seg in snap.segments if seg.approximate)
        entries = {e for seg in snap.segments for e in seg.rows_by_entry}
        return exact, approximate, len(entries)

    # ----------------------------------------------------------------------------- readers
    def shortlist(self, descriptors: np.ndarray, scopes: Sequence[int], limit: int) -> list[Candidate]:
        """Entries ranked by how many query descriptors have them among their near neighbours."""
        return self.ballot(descriptors, scopes).top(limit)

    def ballot(self, descriptors: np.ndarray, scopes: Sequence[int]) -> Ballot:
        """The votes of these query descriptors, per entry.

        Ballots of disjoint descriptor subsets of one photo add up to the ballot of the whole photo, so a
        search can vote with a few descriptors first and only pay for the rest when it has to.
        """
        s = self.settings
        query = np.ascontiguousarray(descriptors, dtype=np.uint8)
        if len(query) == 0:
            return Ballot()
        with self._swap:
            snaps = [(sc, self._snapshots[sc]) for sc in dict.fromkeys(scopes) if sc in self._snapshots]
        qs: list[np.ndarray] = []
        es: list[np.ndarray] = []
        scope_of: dict[int, int] = {}
        for scope, snap in snaps:
            for seg in snap.segments:
                if seg.rows == 0:
                    continue
                k = min(s.neighbours, seg.rows)
                dist, lab = seg.index.search(query, k)  # type: ignore[attr-defined]
                ok = (lab >= 0) & (dist <= s.max_distance)
                qi = np.nonzero(ok)[0]
                ent = seg.entries[lab[ok]]
                if snap.dead:
                    alive = ~np.isin(ent, np.fromiter(snap.dead, np.int64, len(snap.dead)))
                    qi, ent = qi[alive], ent[alive]
                qs.append(qi)
                es.append(ent)
                for e in np.unique(ent).tolist():
                    scope_of[e] = scope
        if not qs:
            return Ballot()
        qi = np.concatenate(qs)
        ent = np.concatenate(es)
        if len(ent) == 0:
            return Ballot()
        uniq, inverse = np.unique(ent, return_inverse=True)
        # One vote per (query descriptor, entry): repeated texture inside a target cannot stuff the ballot.
        pair = np.unique(qi.astype(np.int64) * len(uniq) + inverse)
        votes = np.bincount(pair % len(uniq), minlength=len(uniq)).astype(np.float64)
        return Ballot(uniq.astype(np.int64), votes, scope_of)

    def __len__(self) -> int:
        with self._swap:
            return len(self._descriptors)

    def memory_bytes(self) -> int:
        """Approximate RAM held by stored descriptors and index codes."""
        with self._swap:
            snaps = list(self._snapshots.values())
        total = 0
        for snap in snaps:
            for seg in snap.segments:
                total += seg.rows * (BITS // 8 + 8) * (2 if seg.approximate else 1)
        return total


def _still_present(dead: frozenset[int], segments: tuple[_Segment, ...]) -> frozenset[int]:
    """Tombstones are only needed while some segment still holds rows of the dead entry."""
    return frozenset(e for e in dead if any(e in seg.rows_by_entry for seg in segments))


def _stack(rows: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[int, int]]]:
    ranges: dict[int, tuple[int, int]] = {}
    start = 0
    for entry, desc in rows:
        ranges[entry] = (start, start + len(desc))
        start += len(desc)
    if rows:
        data = np.ascontiguousarray(np.concatenate([d for _, d in rows]), dtype=np.uint8)
        entries = np.concatenate([np.full(len(d), e, np.int64) for e, d in rows])
    else:
        data = np.zeros((0, BITS // 8), np.uint8)
        entries = np.zeros(0, np.int64)
    return data, entries, ranges


def _flat_segment(rows: list[tuple[int, np.ndarray]]) -> _Segment:
    data, entries, ranges = _stack(rows)
    index = faiss.IndexBinaryFlat(BITS)
    if len(data):
        index.add(data)
    return _Segment(index, entries, ranges)
