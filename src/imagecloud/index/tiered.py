"""Which index serves which scope: the exact index for small scopes, the visual-word index for large ones.

Every scope starts in the exact index (:mod:`imagecloud.index.exact`), which recalls the most. A scope that
reaches ``words_min_targets`` targets moves to the visual-word index (:mod:`imagecloud.index.visualwords`),
whose RAM per target is ~1/100 of the exact index's (1.8 KB against 176 KB of process RSS,
bench/results/scale/); its exact-index memory is freed. The first time a scope gets there, a vocabulary is
trained in the background on the targets enrolled so far; from then on the word index holds every target,
so the next scope to grow moves at once.

:class:`TieredIndex` adds, removes and searches like an :class:`imagecloud.index.base.Index`; a search that
treats the two indexes differently asks :meth:`TieredIndex.parts` which index serves which of its scopes.
Its start-up takes two steps instead of ``restore``: :meth:`TieredIndex.open` reopens the word index, which
needs only the targets its saved postings miss (:meth:`TieredIndex.load_words`), then :meth:`TieredIndex.load`
gives the exact index every target of the scopes it serves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagecloud.index.base import Candidate, Index
from imagecloud.index.binary import IndexSettings
from imagecloud.index.exact import ExactIndex
from imagecloud.index.visualwords import VisualWordIndex
from imagecloud.index.words import WordSettings
from imagecloud.vision.features import Features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierSettings:
    # Scopes with at least this many targets are searched through the visual-word index; smaller scopes
    # keep the exact index, which recalls more (see the module docstring).
    words_min_targets: int = 100_000
    exact: IndexSettings = field(default_factory=IndexSettings)
    words: WordSettings = field(default_factory=WordSettings)
    vocabulary_sample: int = 1_000_000  # descriptors the vocabulary is trained on


class TieredIndex:
    """The exact and the visual-word index behind one interface, routing each scope to one of them.

    With a folder, the exact index keeps its sealed segments in ``exact/`` and the word index its
    vocabulary and postings beside it, so both are reused at the next start.
    """

    def __init__(self, settings: TierSettings | None = None, folder: Path | None = None) -> None:
        self.settings = settings or TierSettings()
        self.exact = ExactIndex(self.settings.exact, folder / "exact" if folder is not None else None)
        self.words = VisualWordIndex(self.settings.words, folder)
        self._lock = threading.Lock()  # guards the two fields below and the training thread
        self._word_scopes: set[int] = set()  # scopes served by the word index (not in the exact one)
        self._word_sizes: dict[int, int] = {}  # targets per word-served scope
        self._training: threading.Thread | None = None

    @property
    def restored(self) -> int:
        """Targets the last load took from the exact index's saved segments instead of indexing them."""
        return self.exact.restored

    def word_scopes(self) -> set[int]:
        with self._lock:
            return set(self._word_scopes)

    def parts(self, scopes: Sequence[int]) -> list[tuple[Index, list[int]]]:
        """The indexes serving ``scopes`` and the scopes each serves, the exact index first."""
        with self._lock:
            word_scopes = [sc for sc in scopes if sc in self._word_scopes]
        exact_scopes = [sc for sc in scopes if sc not in set(word_scopes)]
        parts: list[tuple[Index, list[int]]] = []
        if exact_scopes:
            parts.append((self.exact, exact_scopes))
        if word_scopes:
            parts.append((self.words, word_scopes))
        return parts

    # ----------------------------------------------------------------------------- writers
    def add(self, scope: int, target: int, features: bytes) -> None:
        self.words.add(scope, target, features)
        with self._lock:
            to_words = scope in self._word_scopes
            if to_words:
                self._word_sizes[scope] = self._word_sizes.get(scope, 0) + 1
        if to_words:
            return
        self.exact.add(scope, target, features)
        self._grow_check(scope)

    def remove(self, target: int, scope: int | None = None) -> None:
        """``scope``: the target's, for the sizes of word-served scopes (the word index does not know it)."""
        self.words.remove(target)
        with self._lock:
            if scope in self._word_sizes:
                self._word_sizes[scope] = max(0, self._word_sizes[scope] - 1)
        self.exact.remove(target)

    def drop_scope(self, scope: int) -> None:
        with self._lock:
            self._word_sizes.pop(scope, None)
            self._word_scopes.discard(scope)
        self.exact.drop_scope(scope)
        self.words.drop_scope(scope)

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert into the exact index at start-up (word-served scopes: see :meth:`open`)."""
        scopes: set[int] = set()

        def noting(rows: Iterable[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, bytes]]:
            for row in rows:
                scopes.add(row[0])
                yield row

        self.exact.load(noting(items))
        for scope in scopes:
            self._grow_check(scope)

    def load_words(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert into the word index only (targets its saved postings missed)."""
        self.words.load(items)

    # ----------------------------------------------------------------------------- persistence
    def save(self) -> None:
        self.exact.save()
        self.words.save()

    def open(self, live: np.ndarray, sizes: Mapping[int, int]) -> np.ndarray:
        """Start-up: open the saved word index, if any, and reconcile it with ``live``.

        ``sizes`` are the targets per scope in the database: scopes at or above the threshold are served by
        the word index and must not be given to :meth:`load`. Returns the live targets the saved word index
        does not hold, whose features go to :meth:`load_words`.
        """
        missing = self.words.restore(live)
        if not self.words.trained:  # no vocabulary saved: every scope stays with the exact index
            return missing
        big = {sc: n for sc, n in sizes.items() if n >= self.settings.words_min_targets}
        with self._lock:
            self._word_scopes = set(big)
            self._word_sizes.update(big)
        return missing

    def wait_idle(self) -> None:
        """Block until background work of both indexes, vocabulary training included, has finished."""
        self.exact.wait_idle()
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
        """A scope that reached the threshold moves to the word index (trained first if there is none)."""
        s = self.settings
        size = self.exact.size(scope)
        with self._lock:
            big = size >= s.words_min_targets and scope not in self._word_scopes
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
            big = [sc for sc in {sc for sc, _, _ in held} if self.exact.size(sc) >= s.words_min_targets]
            for scope in big:
                self._promote(scope)
            self.words.save()
        except Exception:  # a failed training leaves the exact index serving; logged, retried on growth
            log.exception("vocabulary training failed")

    def _promote(self, scope: int) -> None:
        """Serve ``scope`` from the word index and free its exact-index memory."""
        size = self.exact.size(scope)
        with self._lock:
            self._word_scopes.add(scope)
            self._word_sizes[scope] = size
        self.exact.drop_scope(scope)
        log.info("channel %d now searched through the word index", scope)

    # ----------------------------------------------------------------------------- readers
    def search(self, descriptors: np.ndarray, scopes: Sequence[int], limit: int) -> list[Candidate]:
        """Each serving index's candidates in turn, the exact index's first (their scores differ in kind)."""
        out: list[Candidate] = []
        for index, part in self.parts(scopes):
            out.extend(index.search(descriptors, part, limit))
        return out[:limit]

    def features(self, targets: Sequence[int]) -> dict[int, Features]:
        return self.exact.features(targets)

    def holds(self, target: int) -> bool:
        return self.exact.holds(target) or self.words.holds(target)

    def __len__(self) -> int:
        with self._lock:
            words = sum(self._word_sizes.values())
        return len(self.exact) + words

    def memory_bytes(self) -> int:
        """Approximate RAM of both indexes, the features the exact index keeps included."""
        return self.exact.memory_bytes() + self.words.memory_bytes()
