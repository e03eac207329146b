"""FAISS binary-descriptor index with descriptor voting, partitioned by scope.

Concurrency model (why there is no global lock held during a search):

* Each scope is an immutable *snapshot*: a tuple of immutable segments plus a frozen set of dead
  entries. Writers build a new snapshot and swap the reference under a short lock; readers grab
  the current reference and search it without any lock. A search therefore never waits for an add,
  and an add never waits for a search.
* ``add`` puts a target into its own small exact (flat) segment; small segments are merged when
  there are too many of them. ``remove`` only adds a tombstone, which every search filters, so a
  removed entry cannot be returned once ``remove`` has returned.
* Heavier upkeep runs in one background job per scope, which builds a segment from rows of the current
  snapshot without any lock and then swaps it in place of the segments it replaces; tombstones and adds
  that happened meanwhile stay valid because entries are never reused.

Segment policy (why upkeep costs little per add, however large the scope):

* Once a scope holds ``ivf_min_rows`` rows, a job trains a coarse quantizer (k-means centroids) and builds
  one inverted-file (IVF) segment over all of it. The quantizer is kept and shared by every later IVF
  segment of the scope.
* Exact rows beyond ``flat_max_rows`` are *sealed* into a new IVF segment of their own, built with the
  shared quantizer: no training, and work proportional to the new rows only. Large segments are never
  rebuilt because small ones arrived.
* IVF segments of similar size (the same power of ``merge_factor`` times ``flat_max_rows``) are merged
  once ``merge_factor`` of them exist, as in a log-structured merge: a row is rewritten O(log n) times
  over its life, and the segment count stays logarithmic. A segment of which ``compact_dead_fraction``
  was removed is rewritten without the dead rows, so replaced and removed targets do not keep memory.
* Only when the scope has grown ``retrain_growth`` times beyond what the quantizer was trained on is the
  whole scope rebuilt with a fresh quantizer (the centroids would no longer partition it evenly); that
  is O(n) work every time n is multiplied by ``retrain_growth``, i.e. O(1) per added row.
* Because the IVF segments share one quantizer, a search assigns each query descriptor to its lists once
  and scans those lists in every segment; the k nearest rows are then taken over all segments of the
  scope, so the votes do not depend on how the rows happen to be split into segments.
* The index keeps no copy of the descriptors beside its segments: a job reads the rows it rebuilds back
  from the codes of the (immutable) segments it replaces (``_live_rows``), outside every lock.
* IVF segments never change once built, so each can be written to disk once (``on_sealed`` tells when the
  set changed, ``sealed`` lists it, ``restore`` puts a saved set back; the files are ``index.sealed``'s).

Votes and their consistency (why a ballot counts more than votes):

* Every row carries one byte of its keypoint's geometry (``keypoint_geometry``: orientation in 32 steps,
  pyramid level) in its FAISS id, ``entry << 8 | geometry``, so it costs no RAM beside the id FAISS
  stores anyway. A vote thereby pairs a photo keypoint with a target keypoint.
* A photo of a print turns every keypoint of it by the same angle and scales it by the same factor, so its
  true votes agree on the difference of orientation and of pyramid level; votes drawn by similar texture
  elsewhere do not. A ballot ranks entries by their *consistent* votes, the most votes in one cell of
  orientation and level differences (weak geometric consistency, Jegou et al., ECCV 2008), and candidates
  are verified in that order.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from imagecloud.index.quantizer import BITS, CoarseQuantizer, flat_codes, two_level_centroids

_FAR = np.int32(BITS + 1)  # distance given to "no neighbour" slots: beyond any real one

# A row group of one entry: (entry, descriptors (n, 32) uint8, geometry (n,) uint8).
Row = tuple[int, np.ndarray, np.ndarray]

# Row ids are ``entry << GEOMETRY_BITS | geometry``: the orientation of the row's keypoint in ANGLE_STEPS
# steps above its pyramid level (0-7; deeper levels count as 7).
GEOMETRY_BITS = 8
_GEOMETRY_MASK = (1 << GEOMETRY_BITS) - 1
ANGLE_STEPS = 32
_LEVEL_BITS = 3
_LEVELS = 1 << _LEVEL_BITS
# Consistency cells: differences of orientation in ANGLE_CELLS sectors by differences of level. A vote's
# two orientations are each rounded to 11.25 degrees and a photo's scale falls between two levels, so the
# consistent votes of an entry are the most in a 2 x 2 block of cells.
ANGLE_CELLS = 16
_LEVEL_CELLS = 2 * _LEVELS - 1
_CELLS = ANGLE_CELLS * _LEVEL_CELLS


def keypoint_geometry(angles: np.ndarray, octaves: np.ndarray) -> np.ndarray:
    """One byte per keypoint: its orientation (degrees) in ANGLE_STEPS steps, above its pyramid level."""
    steps = np.floor(np.mod(np.asarray(angles, np.float64), 360.0) * (ANGLE_STEPS / 360.0)).astype(np.int64)
    levels = np.minimum(np.asarray(octaves, np.int64), _LEVELS - 1)
    return ((steps % ANGLE_STEPS) << _LEVEL_BITS | levels).astype(np.uint8)


def _labels(entries: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    return (np.asarray(entries, np.int64) << GEOMETRY_BITS) | np.asarray(geometry, np.int64)


def _cells(photo: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """The consistency cell of votes pairing photo keypoints with stored ones (geometry bytes, int64)."""
    turn = ((photo >> _LEVEL_BITS) - (stored >> _LEVEL_BITS)) % ANGLE_STEPS // (ANGLE_STEPS // ANGLE_CELLS)
    level = (photo & (_LEVELS - 1)) - (stored & (_LEVELS - 1)) + _LEVELS - 1
    return np.asarray(turn * _LEVEL_CELLS + level, np.int64)


def _one_faiss_thread() -> None:
    """Keep FAISS single-threaded in the calling thread.

    Parallelism comes from the service's worker pool. FAISS's OpenMP threads busy-wait when the cores are
    already busy, which was measured to make an IVF build ~80x slower (6.8 s instead of 0.09 s) on 2
    cores. The OpenMP thread count is a per-thread setting, so setting it once at import covers only the
    importing thread: an IVF build in a background thread took 32.6 s with the default and 10.3 s with
    this call (2,000 targets, 2 cores, nothing else running). Hence it is called by every thread that is
    about to use FAISS; it only sets a thread-local value.
    """
    faiss.omp_set_num_threads(1)


_one_faiss_thread()


def _find_malloc_trim() -> Callable[[int], int] | None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)  # glibc only
    return trim


_malloc_trim = _find_malloc_trim()


def _return_freed_memory() -> None:
    """Give memory freed after a whole-scope build back to the operating system.

    glibc keeps freed heap memory for reuse, and a build leaves a lot of it (the stacked rows, the feature
    blobs read from the database at start): measured on a 10,000-target channel, the server held 60 MiB
    more after start-up than after this call. Only called after such builds, which are rare.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


@dataclass(frozen=True)
class IndexSettings:
    neighbours: int = 3  # k nearest stored descriptors per query descriptor (more k = more noise votes)
    max_distance: int = 56  # a neighbour further than this (of 256 bits) casts no vote
    # A search does not verify candidates with fewer consistent votes (see the module docstring) from all of
    # a photo's descriptors (a share of them when fewer voted). With all ~1,000 descriptors of a target
    # indexed; see SubsetSettings for fewer. The gate was 8 of all votes; the right target of a development
    # cover photo keeps three quarters of its votes consistent or more in three photos of four, hence 6. At
    # 8 consistent votes one more cover of 200 went unverified (docs/RECOGNITION.md, section 3).
    min_votes: float = 6.0
    ivf_min_rows: int = 60_000  # below this an exact scan is cheap enough
    # Exact rows tolerated next to IVF segments before they are sealed into one. An exact scan is dear: next
    # to a 4M-row IVF segment, 39k exact rows made a 1,000-descriptor ballot 69% slower (204 vs 121 ms) and
    # 9k rows 7%, while sealing costs only the assignment of the new rows to the existing lists.
    flat_max_rows: int = 10_000
    max_small_segments: int = 16  # merge per-add segments beyond this
    # IVF segments of one size class merged together; the size classes are flat_max_rows times its powers.
    merge_factor: int = 4
    # A segment of which this share of rows belongs to removed entries is rewritten without them.
    compact_dead_fraction: float = 0.25
    # The quantizer is retrained (and the scope rebuilt) once the scope holds this many times the rows it
    # was trained on, so its lists stay evenly filled as a channel grows from its first targets.
    retrain_growth: float = 4.0
    # Lists scanned per query descriptor; cost is linear in it. 8 lost up to 3 points of recall on the
    # development photos depending on how k-means happened to partition the enrolled set; 12 and 16 did
    # not, and 12 kept the real-photo p50 at 54 ms where 16 took 65 ms (1,071 targets, same machine).
    nprobe: int = 12
    # Cap on the lists a scope is cut into (otherwise ~4 sqrt(rows), a power of two). Shorter lists make a
    # vote cheaper: at 1,173 targets (1.2M rows) 4,096 lists instead of 1,024 cut the search of a photo of
    # nothing and of a cover photo by 22%, finding the same 197 of 200 covers, at nprobe 12 (8 lost one).
    # Training them takes ~40 s of one core in the background, once per 4x growth of the scope.
    max_lists: int = 4096
    train_per_list: int = 40  # training sample = nlist * this (FAISS wants >= 39)
    # Above this many lists the centroids are trained in two levels (``index.quantizer``): one k-means over
    # all 256 bits costs time proportional to sample x lists, which at 16,384 lists is hours of one core.
    flat_train_max_lists: int = 4096
    # Above flat_train_max_lists lists, with top_probe > 0, a descriptor finds its lists among the centroids
    # of its top_probe nearest top cells only instead of among all of them, so lists can be short:
    # rows_per_list rows each instead of ~sqrt(rows) / 4 (the two agree at 4,096 lists, ~1M rows). At
    # 100,000 targets of the subset index (20M rows) that made photos of nothing 40% cheaper and found 2-4
    # fewer of 200 covers (docs/RECOGNITION.md, section 3b), so it is off (0) by default.
    top_probe: int = 0
    rows_per_list: int = 256


@dataclass(frozen=True)
class Candidate:
    scope: int
    entry: int
    votes: float
    consistent: float  # the most votes that agree on one turn and change of scale (module docstring)


def _empty() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass(frozen=True, eq=False)
class Ballot:
    """The votes of a set of query descriptors: one per (query descriptor, entry), with its cell."""

    entries: np.ndarray = field(default_factory=_empty)  # the entry of each vote
    cells: np.ndarray = field(default_factory=_empty)  # its consistency cell
    scope_of: dict[int, int] = field(default_factory=dict)

    def __add__(self, other: Ballot) -> Ballot:
        """Votes of two disjoint sets of query descriptors."""
        if len(other.entries) == 0:
            return self
        if len(self.entries) == 0:
            return other
        return Ballot(
            np.concatenate([self.entries, other.entries]),
            np.concatenate([self.cells, other.cells]),
            {**self.scope_of, **other.scope_of},
        )

    def tally(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(entries sorted, their votes, their consistent votes)."""
        entries, inverse = np.unique(self.entries, return_inverse=True)
        votes = np.bincount(inverse, minlength=len(entries))
        # Votes per (entry, cell), then per 2 x 2 block of cells (anchored at its lower corner; orientation
        # wraps around, level does not), then the best block of each entry.
        cell_keys, counts = np.unique(inverse * _CELLS + self.cells, return_counts=True)
        owner, cell = np.divmod(cell_keys, _CELLS)
        turn, level = np.divmod(cell, _LEVEL_CELLS)
        anchors = []
        for dt in (0, 1):
            for dl in (0, 1):
                t = (turn - dt) % ANGLE_CELLS
                lv = level - dl
                anchors.append((owner * _CELLS + t * _LEVEL_CELLS + np.maximum(lv, 0), lv >= 0))
        keys = np.concatenate([k[ok] for k, ok in anchors])
        weights = np.concatenate([counts[ok] for _, ok in anchors])
        blocks, where = np.unique(keys, return_inverse=True)
        block_votes = np.bincount(where, weights)
        consistent = np.zeros(len(entries), np.int64)
        np.maximum.at(consistent, blocks // _CELLS, block_votes.astype(np.int64))
        return entries, votes, consistent

    def top(self, limit: int) -> list[Candidate]:
        """The ``limit`` entries with the most consistent votes, then most votes, then the lowest entry."""
        if len(self.entries) == 0:
            return []
        entries, votes, consistent = self.tally()
        order = np.lexsort((entries, -votes, -consistent))[:limit]
        return [
            Candidate(self.scope_of[int(entries[i])], int(entries[i]), float(votes[i]), float(consistent[i]))
            for i in order
        ]


_serials = itertools.count(1)


def next_serial() -> int:
    """A number no segment or quantizer of this process has had (for objects read back from disk)."""
    return next(_serials)


@dataclass(frozen=True, eq=False)
class _Coarse:
    """A scope's trained coarse quantizer, shared by all its IVF segments; read-only once published."""

    quantizer: CoarseQuantizer  # its flat index is kept here too, since FAISS does not own it from Python
    nlist: int
    nprobe: int
    trained_rows: int  # live rows of the scope when it was trained
    serial: int = field(default_factory=lambda: next(_serials))


@dataclass(frozen=True, eq=False)
class _Segment:
    index: object  # faiss.IndexBinary (flat or IVF); read-only once published
    rows: int
    rows_by_entry: dict[int, tuple[int, int]]  # entry -> (start, stop)
    # Flat segments: the id (entry and geometry) of each row, since FAISS labels are row numbers. IVF segments
    # store the id in FAISS instead, which saves these 8 bytes per row on the large segments.
    labels: np.ndarray | None = None
    coarse: _Coarse | None = None  # set on IVF segments
    serial: int = field(default_factory=lambda: next(_serials))  # tells rebuilt segments from kept ones

    @property
    def approximate(self) -> bool:
        return self.coarse is not None


@dataclass(frozen=True)
class _Snapshot:
    segments: tuple[_Segment, ...] = ()
    dead: frozenset[int] = frozenset()
    coarse: _Coarse | None = None  # the quantizer new IVF segments of the scope are built with


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a scope, for tests, benchmarks and diagnostics."""

    serial: int  # unique per built segment: equal serials mean the same, untouched segment
    rows: int
    approximate: bool


@dataclass(frozen=True, eq=False)
class SealedSegment:
    """An IVF segment as persistence sees it: immutable, so saved once under its serial."""

    serial: int  # unique in this process: the same serial is the same segment
    index: faiss.IndexBinaryIVF
    spans: dict[int, tuple[int, int]]  # entry -> its rows (start, stop)


@dataclass(frozen=True, eq=False)
class SealedScope:
    """A scope's quantizer and IVF segments; its exact (flat) rows are few and rebuilt from the database."""

    quantizer: faiss.IndexBinaryFlat
    quantizer_serial: int
    nlist: int
    trained_rows: int
    segments: tuple[SealedSegment, ...]
    top_probe: int = 0  # the quantizer's top_probe when the rows were put in their lists (0: all centroids)


@dataclass(frozen=True, eq=False)
class _Job:
    """Background upkeep: replace ``inputs`` by one segment built from their live rows."""

    kind: str  # "train" (new quantizer, whole scope), "seal", "merge" or "compact"
    inputs: tuple[_Segment, ...]


class BinaryVotingIndex:
    """Thread-safe per-scope index of 256-bit descriptors answering 'which entries look similar'."""

    def __init__(
        self, settings: IndexSettings | None = None, on_sealed: Callable[[], None] | None = None
    ) -> None:
        self.settings = settings or IndexSettings()
        # Called (in the job's thread, no lock held) after background upkeep changed the IVF segments.
        self.on_sealed = on_sealed
        self._swap = threading.Lock()  # guards the dicts below; held only for reference swaps
        self._writers: dict[int, threading.Lock] = {}  # serialises writers of one scope
        self._snapshots: dict[int, _Snapshot] = {}
        self._jobs: dict[int, _Job] = {}  # the running background job per scope
        self._threads: list[threading.Thread] = []
        self._rows_built = 0

    # ----------------------------------------------------------------------------- writers
    def _writer(self, scope: int) -> threading.Lock:
        with self._swap:
            lock = self._writers.get(scope)
            if lock is None:
                lock = self._writers[scope] = threading.Lock()
            return lock

    def add(
        self, scope: int, entry: int, descriptors: np.ndarray, geometry: np.ndarray | None = None
    ) -> None:
        """Index one entry's descriptors with their keypoints' geometry (:func:`keypoint_geometry`; rows
        without it count as one orientation and level, see :meth:`ballot`)."""
        _one_faiss_thread()
        segment = _flat_segment([_row(entry, descriptors, geometry)])
        with self._writer(scope):
            with self._swap:
                snap = self._snapshots.get(scope, _Snapshot())
                self._snapshots[scope] = _Snapshot((*snap.segments, segment), snap.dead, snap.coarse)
            self._maintain(scope)

    def remove(self, scope: int, entry: int) -> None:
        with self._writer(scope):
            with self._swap:
                snap = self._snapshots.get(scope)
                if snap is not None:
                    self._snapshots[scope] = _Snapshot(snap.segments, snap.dead | {entry}, snap.coarse)
            if snap is not None:
                self._maintain(scope)  # enough removals make a segment worth compacting

    def drop_scope(self, scope: int) -> None:
        with self._writer(scope), self._swap:
            self._snapshots.pop(scope, None)

    def load(self, items: Iterable[tuple[int, int, np.ndarray, np.ndarray | None]]) -> None:
        """Bulk insert of (scope, entry, descriptors, geometry); builds one segment per scope directly instead
        of many small ones."""
        _one_faiss_thread()
        by_scope: dict[int, list[Row]] = {}
        for scope, entry, desc, geo in items:
            by_scope.setdefault(scope, []).append(_row(entry, desc, geo))
        for scope, rows in by_scope.items():
            with self._writer(scope):
                with self._swap:
                    snap = self._snapshots.get(scope, _Snapshot())
                live = _live_rows(snap.segments, snap.dead)
                everything = live + rows
                total = sum(len(r[1]) for r in everything)
                coarse = self._train(everything) if total >= self.settings.ivf_min_rows else None
                segment = (
                    _ivf_segment(everything, coarse) if coarse is not None else _flat_segment(everything)
                )
                with self._swap:
                    # Replaces every segment, so a job still running for the scope finds its inputs gone
                    # and drops its result (see _finish).
                    self._snapshots[scope] = _Snapshot((segment,), frozenset(), coarse)
        _return_freed_memory()

    def add_rows(self, scope: int, rows: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Bulk insert of (entry, descriptors, geometry) next to a scope's current segments, as one exact
        segment that upkeep seals later."""
        _one_faiss_thread()
        batch = [_row(*r) for r in rows]
        if not batch:
            return
        segment = _flat_segment(batch)
        with self._writer(scope):
            with self._swap:
                snap = self._snapshots.get(scope, _Snapshot())
                self._snapshots[scope] = _Snapshot((*snap.segments, segment), snap.dead, snap.coarse)
            self._maintain(scope)

    def sealed(self) -> dict[int, SealedScope]:
        """The quantizer and IVF segments of every scope that has them (for saving)."""
        with self._swap:
            snaps = dict(self._snapshots)
        out: dict[int, SealedScope] = {}
        for scope, snap in snaps.items():
            if snap.coarse is None:
                continue
            c = snap.coarse
            segments = tuple(
                SealedSegment(seg.serial, seg.index, seg.rows_by_entry)  # type: ignore[arg-type]
                for seg in snap.segments
                if seg.coarse is c
            )
            out[scope] = SealedScope(
                c.quantizer.flat, c.serial, c.nlist, c.trained_rows, segments, c.quantizer.top_probe
            )
        return out

    def restore(self, scope: int, saved: SealedScope, dead: frozenset[int]) -> None:
        """Put saved IVF segments back as the scope's only segments.

        ``dead`` are saved entries that are no longer current: searches skip them, upkeep compacts them away.
        """
        coarse = _Coarse(
            self._quantizer(saved.quantizer),
            saved.nlist,
            min(self.settings.nprobe, saved.nlist),
            saved.trained_rows,
            serial=saved.quantizer_serial,
        )
        segments = []
        for seg in saved.segments:
            seg.index.nprobe = coarse.nprobe
            rows = int(seg.index.ntotal)
            segments.append(_Segment(seg.index, rows, seg.spans, coarse=coarse, serial=seg.serial))
        with self._writer(scope):
            with self._swap:
                self._snapshots[scope] = _Snapshot(tuple(segments), dead, coarse)
            self._maintain(scope)

    def _maintain(self, scope: int) -> None:
        """Called with the scope's writer lock held: keep segments few and start background upkeep."""
        s = self.settings
        with self._swap:
            snap = self._snapshots.get(scope)
            busy = self._jobs.get(scope)
        if snap is None:
            return
        claimed = busy.inputs if busy is not None else ()
        small = [seg for seg in snap.segments if not seg.approximate and seg not in claimed]
        if len(small) > s.max_small_segments:
            rows = _live_rows(small, snap.dead)
            merged = _flat_segment(rows)
            with self._swap:
                current = self._snapshots[scope]
                segments = (*(seg for seg in current.segments if seg not in small), merged)
                snap = self._snapshots[scope] = _Snapshot(
                    segments, _still_present(current.dead, segments), current.coarse
                )
        if busy is not None:
            return  # one job per scope; the running one calls this again when it is done
        job = self._plan(snap)
        if job is None:
            return
        thread = threading.Thread(target=self._run, args=(scope, job), daemon=True, name=f"index-{job.kind}")
        with self._swap:
            self._jobs[scope] = job
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _plan(self, snap: _Snapshot) -> _Job | None:
        """The most useful upkeep for this snapshot, if any."""
        s = self.settings
        flat = tuple(seg for seg in snap.segments if not seg.approximate)
        ivf = [seg for seg in snap.segments if seg.approximate]
        flat_rows = sum(seg.rows for seg in flat)
        dead_rows = {seg.serial: _dead_rows(seg, snap.dead) for seg in snap.segments}
        live = sum(seg.rows for seg in snap.segments) - sum(dead_rows.values())
        if snap.coarse is None:
            return _Job("train", snap.segments) if flat_rows >= s.ivf_min_rows else None
        if live >= s.retrain_growth * snap.coarse.trained_rows:
            return _Job("train", snap.segments)
        if flat_rows >= s.flat_max_rows:
            return _Job("seal", flat)
        by_class: dict[int, list[_Segment]] = {}
        for seg in ivf:
            by_class.setdefault(self._size_class(seg.rows - dead_rows[seg.serial]), []).append(seg)
        for size_class in sorted(by_class):
            if len(by_class[size_class]) >= s.merge_factor:
                return _Job("merge", tuple(by_class[size_class]))
        for seg in ivf:
            if dead_rows[seg.serial] > 0 and dead_rows[seg.serial] >= s.compact_dead_fraction * seg.rows:
                return _Job("compact", (seg,))
        return None

    def _size_class(self, rows: int) -> int:
        s = self.settings
        return int(math.log(max(rows, s.flat_max_rows) / s.flat_max_rows, s.merge_factor))

    def _run(self, scope: int, job: _Job) -> None:
        _one_faiss_thread()
        try:
            with self._swap:
                snap = self._snapshots.get(scope)
            # Read back from the job's segments, which are immutable, with no lock held: the codes of a
            # large scope take a while to gather.
            rows = _live_rows(job.inputs, snap.dead) if snap is not None else []
            coarse = snap.coarse if snap is not None else None
            built: _Segment | None = None
            if snap is not None and rows:
                # The slow part, with no lock held.
                if job.kind == "train":
                    coarse = self._train(rows)
                assert coarse is not None
                built = _ivf_segment(rows, coarse)
            with self._writer(scope):
                self._finish(scope, job, built, coarse)
                with self._swap:
                    self._jobs.pop(scope, None)
                # Adds that piled up while the job ran may already call for the next one.
                self._maintain(scope)
            if job.kind == "train":
                _return_freed_memory()
            if built is not None and self.on_sealed is not None:
                self.on_sealed()
        finally:
            with self._swap:
                if self._jobs.get(scope) is job:
                    self._jobs.pop(scope)

    def _finish(self, scope: int, job: _Job, built: _Segment | None, coarse: _Coarse | None) -> None:
        """Called with the writer lock held: swap ``built`` in for the job's inputs."""
        with self._swap:
            current = self._snapshots.get(scope)
            if current is None or any(seg not in current.segments for seg in job.inputs):
                return  # the scope was dropped or reloaded meanwhile: the result is stale
            kept = tuple(seg for seg in current.segments if seg not in job.inputs)
            segments = kept if built is None else (built, *kept)
            if job.kind != "train":
                coarse = current.coarse
            self._snapshots[scope] = _Snapshot(segments, _still_present(current.dead, segments), coarse)
            self._rows_built += built.rows if built is not None else 0

    def _train(self, rows: list[Row]) -> _Coarse:
        s = self.settings
        total = sum(len(r[1]) for r in rows)
        nlist = _list_count(total, s)
        wanted = nlist * s.train_per_list
        # The sample is drawn by row number, so only the sampled rows are copied, not the whole scope.
        offsets = np.cumsum([0] + [len(r[1]) for r in rows])
        picks = (
            np.arange(total)
            if total <= wanted
            else np.sort(np.random.default_rng(0).choice(total, wanted, replace=False))
        )
        owner = np.searchsorted(offsets, picks, side="right") - 1
        sample = np.stack(
            [rows[o][1][p - offsets[o]] for o, p in zip(owner.tolist(), picks.tolist(), strict=True)]
        )
        sample = np.ascontiguousarray(sample, dtype=np.uint8)
        flat = faiss.IndexBinaryFlat(BITS)
        if nlist > s.flat_train_max_lists:
            flat.add(two_level_centroids(sample, nlist))
        else:
            trainer = faiss.IndexBinaryIVF(flat, BITS, nlist)
            trainer.train(sample)
        return _Coarse(self._quantizer(flat), flat.ntotal, min(s.nprobe, flat.ntotal), total)

    def _quantizer(self, flat: faiss.IndexBinaryFlat) -> CoarseQuantizer:
        return CoarseQuantizer(flat, self._top_probe(flat.ntotal))

    def _top_probe(self, nlist: int) -> int:
        """The top cells a quantizer of ``nlist`` centroids searches (0: it compares every centroid)."""
        s = self.settings
        return s.top_probe if nlist > s.flat_train_max_lists else 0

    def assigned_like(self, saved: SealedScope) -> bool:
        """Whether this index would put the saved scope's rows in the lists they are in (its quantizer
        searches the saved centroids as the one that filled them did), so its segments can be reused."""
        return saved.top_probe == self._top_probe(saved.nlist)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until background jobs finish (for tests, benchmarks and orderly shutdown).

        A finished job may start the next one, so this waits until no job thread is alive.
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

    def segments(self, scope: int) -> list[SegmentInfo]:
        """The segments of a scope's current snapshot."""
        with self._swap:
            snap = self._snapshots.get(scope, _Snapshot())
        return [SegmentInfo(seg.serial, seg.rows, seg.approximate) for seg in snap.segments]

    @property
    def rows_built(self) -> int:
        """Rows written into IVF segments by background jobs so far: the upkeep work done."""
        with self._swap:
            return self._rows_built

    # ----------------------------------------------------------------------------- readers
    def shortlist(
        self, descriptors: np.ndarray, scopes: Sequence[int], limit: int, geometry: np.ndarray | None = None
    ) -> list[Candidate]:
        """Entries ranked by how many query descriptors have them among their near neighbours (consistently
        with this geometry, see :meth:`ballot`)."""
        return self.ballot(descriptors, scopes, geometry).top(limit)

    def ballot(
        self, descriptors: np.ndarray, scopes: Sequence[int], geometry: np.ndarray | None = None
    ) -> Ballot:
        """The votes of these query descriptors, their keypoints of this geometry (:func:`keypoint_geometry`).

        Without geometry (of the query, or of rows added without it) votes count as one orientation and
        level: among such rows the ballot ranks by votes alone.

        Ballots of disjoint descriptor subsets of one photo add up to the ballot of the whole photo, so a
        search can vote with a few descriptors first and only pay for the rest when it has to.
        """
        _one_faiss_thread()
        s = self.settings
        query = np.ascontiguousarray(descriptors, dtype=np.uint8)
        if len(query) == 0:
            return Ballot()
        with self._swap:
            snaps = [(sc, self._snapshots[sc]) for sc in dict.fromkeys(scopes) if sc in self._snapshots]
        photo = np.zeros(len(query), np.int64) if geometry is None else np.asarray(geometry, np.int64)
        qs: list[np.ndarray] = []
        labs: list[np.ndarray] = []
        scope_of: dict[int, int] = {}
        for scope, snap in snaps:
            dist, lab = _nearest(query, snap, s.neighbours)
            ok = (lab >= 0) & (dist <= s.max_distance)
            # Row-major, so each query descriptor's neighbours come nearest first.
            qs.append(np.nonzero(ok)[0])
            labs.append(lab[ok])
            for e in np.unique(lab[ok] >> GEOMETRY_BITS).tolist():
                scope_of[e] = scope
        if not qs:
            return Ballot()
        qi = np.concatenate(qs)
        lab = np.concatenate(labs)
        if len(lab) == 0:
            return Ballot()
        ent = lab >> GEOMETRY_BITS
        # One vote per (query descriptor, entry), by its nearest row: repeated texture inside a target cannot
        # stuff the ballot.
        uniq, inverse = np.unique(ent, return_inverse=True)
        _, first = np.unique(qi.astype(np.int64) * len(uniq) + inverse, return_index=True)
        cells = _cells(photo[qi[first]], lab[first] & _GEOMETRY_MASK)
        return Ballot(ent[first], cells, scope_of)

    def __len__(self) -> int:
        """Live entries over all scopes."""
        with self._swap:
            snaps = list(self._snapshots.values())
        return sum(len(seg.rows_by_entry.keys() - snap.dead) for snap in snaps for seg in snap.segments)

    def memory_bytes(self) -> int:
        """Approximate RAM held by index codes and row maps (the descriptors belong to the caller)."""
        with self._swap:
            snaps = list(self._snapshots.values())
        return sum(seg.rows * (BITS // 8 + 8) for snap in snaps for seg in snap.segments)


def _nearest(query: np.ndarray, snap: _Snapshot, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and ids (entry and geometry) of each query descriptor's ``k`` nearest live rows over all
    segments.

    Id -1 marks an empty slot. The k are chosen over the whole scope, so the answer is the same however
    the rows are split into segments, and removed entries are dropped before they are chosen.
    """
    n = len(query)
    dead = np.fromiter(snap.dead, np.int64, len(snap.dead)) if snap.dead else None
    assigned: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per quantizer: (distances, lists)
    dists: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    for seg in snap.segments:
        if seg.rows == 0:
            continue
        # Removed rows are only dropped after FAISS has chosen a segment's nearest rows; asking for more than
        # k while tombstones exist lets up to k removed rows give their places to the next live ones.
        kk = min(2 * k if dead is not None else k, seg.rows)
        if seg.coarse is not None:
            key = id(seg.coarse)
            if key not in assigned:
                assigned[key] = seg.coarse.quantizer.search(query, seg.coarse.nprobe)
            dq, lq = assigned[key]
            dist, lab = seg.index.search_preassigned(query, kk, lq, dq)  # type: ignore[attr-defined]
        else:
            assert seg.labels is not None
            dist, row = seg.index.search(query, kk)  # type: ignore[attr-defined]
            lab = np.where(row >= 0, seg.labels[np.maximum(row, 0)], -1)
        if dead is not None:
            lab = np.where(np.isin(lab >> GEOMETRY_BITS, dead), -1, lab)
        dists.append(np.where(lab >= 0, dist, _FAR))
        labs.append(lab)
    if not dists:
        return np.full((n, 0), _FAR, np.int32), np.full((n, 0), -1, np.int64)
    dist = np.concatenate(dists, axis=1)
    lab = np.concatenate(labs, axis=1)
    if dist.shape[1] > k:
        # Stable, so equally near rows keep segment order, as a single segment would keep row order.
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        dist = np.take_along_axis(dist, order, axis=1)
        lab = np.take_along_axis(lab, order, axis=1)
    return dist, lab


def _live_rows(segments: Iterable[_Segment], dead: frozenset[int]) -> list[Row]:
    """The rows of the live entries of ``segments``, read back from the segments' own codes and ids.

    The index keeps no other copy of them: for the large-scale index that copy was as large as the index.
    """
    out: list[Row] = []
    for seg in segments:
        codes, labels = _segment_codes(seg)
        if seg.coarse is not None:
            # IVF rows lie in list order; a stable sort by entry gathers each entry's rows and keeps their
            # order within each list, so a rebuild with the same quantizer fills every list as before.
            order = np.argsort(labels >> GEOMETRY_BITS, kind="stable")
            codes, labels = codes[order], labels[order]
            starts = np.searchsorted(labels >> GEOMETRY_BITS, list(seg.rows_by_entry))
        else:
            starts = np.array([span[0] for span in seg.rows_by_entry.values()], np.int64)
        geometry = (labels & _GEOMETRY_MASK).astype(np.uint8)
        for (e, (a, b)), start in zip(seg.rows_by_entry.items(), starts.tolist(), strict=True):
            if e not in dead:
                stop = start + b - a
                out.append((e, codes[start:stop], geometry[start:stop]))
    return out


def _segment_codes(seg: _Segment) -> tuple[np.ndarray, np.ndarray]:
    """A segment's rows as (codes, id of each row); for IVF segments in list order."""
    size = BITS // 8
    if seg.coarse is None:
        assert seg.labels is not None and isinstance(seg.index, faiss.IndexBinaryFlat)
        return flat_codes(seg.index), seg.labels
    lists = seg.index.invlists  # type: ignore[attr-defined]
    codes = np.empty((seg.rows, size), np.uint8)
    labels = np.empty(seg.rows, np.int64)
    at = 0
    for i in range(lists.nlist):
        n = lists.list_size(i)
        if n:
            codes[at : at + n] = faiss.rev_swig_ptr(lists.get_codes(i), n * size).reshape(n, size)
            labels[at : at + n] = faiss.rev_swig_ptr(lists.get_ids(i), n)
            at += n
    return codes, labels


def _list_count(rows: int, s: IndexSettings) -> int:
    """Lists of a scope of ``rows`` rows, a power of two: ~4 sqrt(rows) while every centroid is compared
    with each descriptor, ~rows / rows_per_list once only a few top cells' centroids are (top_probe)."""
    wanted = max(64.0, 4 * math.sqrt(rows))
    if s.top_probe > 0 and wanted > s.flat_train_max_lists:
        wanted = max(wanted, rows / s.rows_per_list)
    return int(min(s.max_lists, 2 ** round(math.log2(wanted))))


def _dead_rows(seg: _Segment, dead: frozenset[int]) -> int:
    total = 0
    for e in dead:
        span = seg.rows_by_entry.get(e)
        if span is not None:
            total += span[1] - span[0]
    return total


def _still_present(dead: frozenset[int], segments: tuple[_Segment, ...]) -> frozenset[int]:
    """Tombstones are only needed while some segment still holds rows of the dead entry."""
    return frozenset(e for e in dead if any(e in seg.rows_by_entry for seg in segments))


def _row(entry: int, descriptors: np.ndarray, geometry: np.ndarray | None = None) -> Row:
    desc = np.ascontiguousarray(descriptors, dtype=np.uint8)
    geo = np.zeros(len(desc), np.uint8) if geometry is None else np.asarray(geometry, np.uint8)
    if geo.shape != (len(desc),):
        raise ValueError(f"{geo.shape} geometry for {len(desc)} descriptors")
    return entry, desc, geo


def _stack(rows: list[Row]) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[int, int]]]:
    """(descriptors, id of each row, entry -> its rows) of ``rows`` stacked in order."""
    ranges: dict[int, tuple[int, int]] = {}
    start = 0
    for entry, desc, _ in rows:
        ranges[entry] = (start, start + len(desc))
        start += len(desc)
    if rows:
        data = np.ascontiguousarray(np.concatenate([d for _, d, _ in rows]), dtype=np.uint8)
        labels = np.concatenate([_labels(np.full(len(d), e, np.int64), g) for e, d, g in rows])
    else:
        data = np.zeros((0, BITS // 8), np.uint8)
        labels = np.zeros(0, np.int64)
    return data, labels, ranges


def _flat_segment(rows: list[Row]) -> _Segment:
    data, labels, ranges = _stack(rows)
    index = faiss.IndexBinaryFlat(BITS)
    if len(data):
        index.add(data)
    return _Segment(index, len(labels), ranges, labels=labels)


def _ivf_segment(rows: list[Row], coarse: _Coarse) -> _Segment:
    """An IVF segment over ``rows`` with an already trained quantizer: assignment only, no k-means."""
    ivf = faiss.IndexBinaryIVF(coarse.quantizer.flat, BITS, coarse.nlist)
    ivf.nprobe = coarse.nprobe
    ranges: dict[int, tuple[int, int]] = {}
    start = 0
    # Added a few targets at a time: the rows are never all stacked into one more copy.
    for chunk in _batched(rows, 64):
        data, labels, spans = _stack(chunk)
        # Each row goes to the list a query descriptor like it would search (the quantizer's own search).
        lists = coarse.quantizer.assign(data)
        ivf.add_core(  # type: ignore[attr-defined]
            len(data), faiss.swig_ptr(data), faiss.swig_ptr(labels), faiss.swig_ptr(lists)
        )
        for e, (a, b) in spans.items():
            ranges[e] = (start + a, start + b)
        start += len(labels)
    return _Segment(ivf, start, ranges, coarse=coarse)


def _batched(rows: list[Row], size: int) -> Iterable[list[Row]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
