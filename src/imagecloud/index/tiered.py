"""Which index serves which scope: the exact index for small scopes, a large-scale index for large ones.

Every scope starts in the exact index (:mod:`imagecloud.index.exact`), which recalls the most. A scope that
reaches ``large_min_targets`` targets moves to the large-scale index, and its exact-index memory is freed:

* ``large = "subset"`` (the default): the subset index (:mod:`imagecloud.index.subset`), each target's 200
  most repeatable descriptors. The scope is copied into it in the background while the exact index keeps
  serving; adds and removes meanwhile go to both.
* ``large = "words"``: the visual-word index (:mod:`imagecloud.index.visualwords`), whose RAM per target is
  smaller still (1.8 KB of process RSS) but which ranks the right target far less often
  (bench/results/scale/). The first time a scope gets there, a vocabulary is trained in the background on
  the targets enrolled so far; from then on the word index holds every target, so the next scope to grow
  moves at once.

:class:`TieredIndex` adds, removes and searches like an :class:`imagecloud.index.base.Index`; a search that
treats the two indexes differently asks :meth:`TieredIndex.parts` which index serves which of its scopes.
Its start-up takes two steps instead of ``restore``: :meth:`TieredIndex.open` learns which scopes are large
and reopens the word index, which needs only the targets its saved postings miss
(:meth:`TieredIndex.load_words`), then :meth:`TieredIndex.load` gives the exact and subset indexes every
target of the scopes they serve.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from imagecloud.index.base import Candidate, Index
from imagecloud.index.binary import IndexSettings
from imagecloud.index.exact import ExactIndex
from imagecloud.index.subset import SubsetIndex, SubsetSettings
from imagecloud.index.visualwords import VisualWordIndex
from imagecloud.index.words import WordSettings
from imagecloud.vision.features import Features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierSettings:
    # Scopes with at least this many targets are searched through the large-scale index; smaller scopes
    # keep the exact index, which recalls the most (see the module docstring).
    large_min_targets: int = 100_000
    large: Literal["subset", "words"] = "subset"
    exact: IndexSettings = field(default_factory=IndexSettings)
    subset: SubsetSettings = field(default_factory=SubsetSettings)
    words: WordSettings = field(default_factory=WordSettings)
    vocabulary_sample: int = 1_000_000  # descriptors the vocabulary is trained on


class TieredIndex:
    """The exact and a large-scale index behind one interface, routing each scope to one of them.

    With a folder, the exact index keeps its sealed segments in ``exact/``, the subset index in ``subset/``
    and the word index its vocabulary and postings beside them, so all are reused at the next start.
    """

    def __init__(self, settings: TierSettings | None = None, folder: Path | None = None) -> None:
        self.settings = settings or TierSettings()
        self.exact = ExactIndex(self.settings.exact, folder / "exact" if folder is not None else None)
        self.subset = SubsetIndex(self.settings.subset, folder / "subset" if folder is not None else None)
        self.words = VisualWordIndex(self.settings.words, folder)
        self._lock = threading.Lock()  # guards the fields below and the background threads
        self._word_scopes: set[int] = set()  # scopes served by the word index (not in the exact one)
        self._word_sizes: dict[int, int] = {}  # targets per word-served scope
        self._subset_scopes: set[int] = set()  # scopes served by the subset index (not in the exact one)
        self._copying: set[int] = set()  # scopes being copied into the subset index (still served exactly)
        # Held by every add and remove of a scope around its index calls, and by a move of the scope while it
        # reconciles the two indexes and switches over, so no write falls between them.
        self._writers: dict[int, threading.Lock] = {}
        self._training: threading.Thread | None = None
        self._moves: list[threading.Thread] = []

    @property
    def restored(self) -> int:
        """Targets the last load took from saved segments instead of indexing them."""
        return self.exact.restored + self.subset.restored

    def word_scopes(self) -> set[int]:
        with self._lock:
            return set(self._word_scopes)

    def subset_scopes(self) -> set[int]:
        with self._lock:
            return set(self._subset_scopes)

    def parts(self, scopes: Sequence[int]) -> list[tuple[Index, list[int]]]:
        """The indexes serving ``scopes`` and the scopes each serves, the exact index first."""
        with self._lock:
            word_scopes = [sc for sc in scopes if sc in self._word_scopes]
            subset_scopes = [sc for sc in scopes if sc in self._subset_scopes]
        large = set(word_scopes) | set(subset_scopes)
        exact_scopes = [sc for sc in scopes if sc not in large]
        parts: list[tuple[Index, list[int]]] = []
        for index, part in (
            (self.exact, exact_scopes),
            (self.subset, subset_scopes),
            (self.words, word_scopes),
        ):
            if part:
                parts.append((index, part))
        return parts

    # ----------------------------------------------------------------------------- writers
    def _writer(self, scope: int | None) -> threading.Lock:
        with self._lock:
            key = -1 if scope is None else scope
            lock = self._writers.get(key)
            if lock is None:
                lock = self._writers[key] = threading.Lock()
            return lock

    def add(self, scope: int, target: int, features: bytes) -> None:
        self.words.add(scope, target, features)
        with self._writer(scope):
            with self._lock:
                to_words = scope in self._word_scopes
                if to_words:
                    self._word_sizes[scope] = self._word_sizes.get(scope, 0) + 1
                to_subset = scope in self._subset_scopes or scope in self._copying
                only_subset = scope in self._subset_scopes
            if to_words:
                return
            if to_subset:
                self.subset.add(scope, target, features)
            if only_subset:
                return
            self.exact.add(scope, target, features)
        self._grow_check(scope)

    def remove(self, target: int, scope: int | None = None) -> None:
        """``scope``: the target's, for the sizes of word-served scopes (the word index does not know it)."""
        self.words.remove(target)
        with self._writer(scope):
            with self._lock:
                if scope in self._word_sizes:
                    self._word_sizes[scope] = max(0, self._word_sizes[scope] - 1)
            self.subset.remove(target)
            self.exact.remove(target)

    def drop_scope(self, scope: int) -> None:
        with self._lock:
            self._word_sizes.pop(scope, None)
            self._word_scopes.discard(scope)
            self._subset_scopes.discard(scope)
        self.exact.drop_scope(scope)
        self.subset.drop_scope(scope)
        self.words.drop_scope(scope)

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert at start-up: large scopes (see :meth:`open`) into the subset index, the rest into the
        exact index (word-served scopes are not given here).

        Without large scopes the rows stream into the exact index. With them, the small scopes' rows are
        held until the large ones are loaded: each index loads in one pass.
        """
        scopes: set[int] = set()
        large = self.subset_scopes()
        if not large:

            def noting(rows: Iterable[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, bytes]]:
                for row in rows:
                    scopes.add(row[0])
                    yield row

            self.exact.load(noting(items))
            for scope in scopes:
                self._grow_check(scope)
            return
        small: list[tuple[int, int, bytes]] = []

        def routing(rows: Iterable[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, bytes]]:
            for row in rows:
                if row[0] in large:
                    yield row
                else:
                    scopes.add(row[0])
                    small.append(row)

        self.subset.load(routing(items))
        self.exact.load(small)
        for scope in scopes:
            self._grow_check(scope)

    def load_words(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert into the word index only (targets its saved postings missed)."""
        self.words.load(items)

    # ----------------------------------------------------------------------------- persistence
    def save(self) -> None:
        self.exact.save()
        self.subset.save()
        self.words.save()

    def open(self, live: np.ndarray, sizes: Mapping[int, int]) -> np.ndarray:
        """Start-up: open the saved word index, if any, and reconcile it with ``live``.

        ``sizes`` are the targets per scope in the database: scopes at or above the threshold are served by
        the large-scale index. With the word index they must not be given to :meth:`load`; the targets the
        saved word index does not hold are returned, and their features go to :meth:`load_words`.
        """
        if self.settings.large == "subset":
            with self._lock:
                self._subset_scopes = {sc for sc, n in sizes.items() if n >= self.settings.large_min_targets}
            return np.zeros(0, np.int64)
        missing = self.words.restore(live)
        if not self.words.trained:  # no vocabulary saved: every scope stays with the exact index
            return missing
        big = {sc: n for sc, n in sizes.items() if n >= self.settings.large_min_targets}
        with self._lock:
            self._word_scopes = set(big)
            self._word_sizes.update(big)
        return missing

    def wait_idle(self) -> None:
        """Block until background work of every index, moves of scopes and vocabulary training included,
        has finished."""
        while True:
            with self._lock:
                moves = [t for t in self._moves if t.is_alive()]
            if not moves:
                break
            for t in moves:
                t.join()
        self.exact.wait_idle()
        self.subset.wait_idle()
        self.wait_words()

    def wait_words(self) -> None:
        """Block until a vocabulary training started by growth has finished, and its merges."""
        with self._lock:
            thread = self._training
        if thread is not None:
            thread.join()
        self.words.wait_idle()

    # ----------------------------------------------------------------------------- growth
    def _grow_check(self, scope: int) -> None:
        """A scope that reached the threshold moves to the large-scale index."""
        s = self.settings
        size = self.exact.size(scope)
        if s.large == "subset":
            with self._lock:
                move = size >= s.large_min_targets and scope not in self._copying | self._subset_scopes
                if move:
                    self._copying.add(scope)
                    thread = threading.Thread(
                        target=self._to_subset, args=(scope,), daemon=True, name="subset-copy"
                    )
                    self._moves = [t for t in self._moves if t.is_alive()] + [thread]
            if move:
                thread.start()
            return
        with self._lock:
            big = size >= s.large_min_targets and scope not in self._word_scopes
            training = self._training is not None and self._training.is_alive()
        if not big or training:
            return
        if not self.words.trained:
            thread = threading.Thread(target=self._train_words, daemon=True, name="vocabulary-training")
            with self._lock:
                self._training = thread
            thread.start()
        else:
            self._promote(scope)

    def _train_words(self) -> None:
        """Train a vocabulary on the enrolled targets, index all of them by words, promote big scopes."""
        s = self.settings
        try:
            held = self.exact.targets()
            rng = np.random.default_rng(0)
            per_target = max(1, s.vocabulary_sample // max(1, len(held)))
            sample = np.concatenate(
                [f.descriptors[rng.permutation(len(f))[:per_target]] for _, _, f in held if len(f)]
            )
            self.words.train(sample)
            # Targets added from here on go to the word index too; the bulk load then covers the rest
            # (a target in both is harmless: it is one target id).
            held = self.exact.targets()
            self.words.load_features(held)
            log.info("%d targets indexed by words", len(held))
            big = [sc for sc in {sc for sc, _, _ in held} if self.exact.size(sc) >= s.large_min_targets]
            for scope in big:
                self._promote(scope)
            self.words.save()
        except Exception:  # a failed training leaves the exact index serving; logged, retried on growth
            log.exception("vocabulary training failed")

    def _to_subset(self, scope: int) -> None:
        """Copy ``scope`` into the subset index, then serve it from there and free its exact-index memory.

        Adds and removes of the scope go to both indexes from the moment the copy starts (``_copying``).
        The bulk copy runs without blocking them; then, with the scope's writers held, whatever a write
        changed meanwhile (a target removed, replaced or added around the copy) is put right from the
        exact index, which is the truth until the switch, and the scope switches over.
        """
        try:
            held = [(sc, t, f) for sc, t, f in self.exact.targets() if sc == scope]
            self.subset.load((sc, t, f.to_bytes()) for sc, t, f in held)
            self.subset.wait_idle()
            with self._writer(scope):
                truth = self.exact.fingerprints(scope)
                copied = self.subset.fingerprints(scope)
                for t in copied.keys() - truth.keys():
                    self.subset.remove(t)
                stale = {t for t, print_ in truth.items() if copied.get(t) != print_}
                feats = self.exact.features(sorted(stale))
                for t in sorted(stale):
                    self.subset.add(scope, t, feats[t].to_bytes())
                with self._lock:
                    self._subset_scopes.add(scope)
                self.exact.drop_scope(scope)
            log.info("channel %d now searched through the subset index (%d targets)", scope, len(truth))
        except Exception:  # the exact index keeps serving; the next add retries
            log.exception("moving channel %d to the subset index failed", scope)
            self.subset.drop_scope(scope)
        finally:
            with self._lock:
                self._copying.discard(scope)

    def _promote(self, scope: int) -> None:
        """Serve ``scope`` from the word index and free its exact-index memory."""
        size = self.exact.size(scope)
        with self._lock:
            self._word_scopes.add(scope)
            self._word_sizes[scope] = size
        self.exact.drop_scope(scope)
        log.info("channel %d now searched through the word index", scope)

    # ----------------------------------------------------------------------------- readers
    def search(self, photo: Features, scopes: Sequence[int], limit: int) -> list[Candidate]:
        """Each serving index's candidates in turn, the exact index's first (their scores differ in kind)."""
        out: list[Candidate] = []
        for index, part in self.parts(scopes):
            out.extend(index.search(photo, part, limit))
        return out[:limit]

    def features(self, targets: Sequence[int]) -> dict[int, Features]:
        return self.exact.features(targets)

    def holds(self, target: int) -> bool:
        return self.exact.holds(target) or self.subset.holds(target) or self.words.holds(target)

    def __len__(self) -> int:
        with self._lock:
            words = sum(self._word_sizes.values())
            subset = [sc for sc in self._subset_scopes]
        return len(self.exact) + words + sum(self.subset.size(sc) for sc in subset)

    def memory_bytes(self) -> int:
        """Approximate RAM of the indexes, the features the exact index keeps included."""
        return self.exact.memory_bytes() + self.subset.memory_bytes() + self.words.memory_bytes()
