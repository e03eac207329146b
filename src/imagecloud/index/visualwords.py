"""The visual-word index: targets as sets of visual words, for scopes too large for the exact index.

A target costs ~1.8 KB of RAM here instead of ~175 KB in the exact index, at a measured cost in recall
(bench/results/scale/). The vocabulary is trained on enrolled targets (:meth:`VisualWordIndex.train`),
so until then the index is empty and ignores adds; the postings and their upkeep are
:class:`imagecloud.index.words.WordIndex`'s.

It keeps no features: its candidates' features are read from storage by whoever verifies them. With a
folder, the vocabulary is ``vocabulary.npz`` there and the postings the ``words`` folder beside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from imagecloud.index.base import Candidate
from imagecloud.index.words import Vocabulary, WordIndex, WordSettings
from imagecloud.vision.features import Features

log = logging.getLogger(__name__)


class VisualWordIndex:
    """Thread-safe visual-word index of targets by scope (see the module docstring)."""

    def __init__(self, settings: WordSettings | None = None, folder: Path | None = None) -> None:
        self.settings = settings or WordSettings()
        self.folder = folder
        self._lock = threading.Lock()
        self._postings: WordIndex | None = None  # None until a vocabulary is trained or read back

    @property
    def postings(self) -> WordIndex | None:
        """The posting structure, once there is a vocabulary (statistics for benchmarks)."""
        return self._postings

    @property
    def trained(self) -> bool:
        return self._postings is not None

    # ----------------------------------------------------------------------------- vocabulary
    def train(self, sample: np.ndarray) -> None:
        """Train a vocabulary on these descriptors and start indexing with it (empty: load targets next)."""
        vocab = Vocabulary.train(sample, self.settings)
        path = self._vocabulary_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            vocab.save(path)
        with self._lock:
            self._postings = WordIndex(vocab, self.settings)
        log.info("vocabulary of %d words trained", len(vocab))

    def _vocabulary_path(self) -> Path | None:
        return None if self.folder is None else self.folder / "vocabulary.npz"

    # ----------------------------------------------------------------------------- writers
    def add(self, scope: int, target: int, features: bytes) -> None:
        postings = self._postings
        if postings is not None:
            postings.add(target, scope, postings.words_of(Features.from_bytes(features).descriptors))

    def remove(self, target: int) -> None:
        if self._postings is not None:
            self._postings.remove(target)

    def drop_scope(self, scope: int) -> None:
        if self._postings is not None:
            self._postings.drop_scope(scope)

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        self.load_features((scope, target, Features.from_bytes(blob)) for scope, target, blob in items)

    def load_features(self, items: Iterable[tuple[int, int, Features]]) -> None:
        """:meth:`load` with the features already read."""
        postings = self._postings
        if postings is not None:
            postings.load(
                (target, scope, postings.words_of(feats.descriptors)) for scope, target, feats in items
            )

    # ----------------------------------------------------------------------------- persistence
    def save(self) -> None:
        """Write the postings next to their vocabulary, so the next start does not rebuild them."""
        if self._postings is not None and self.folder is not None:
            self._postings.save(self.folder / "words")

    def restore(self, live: np.ndarray) -> np.ndarray:
        """Open the saved vocabulary and postings, if any, and reconcile them with ``live``.

        Without a saved vocabulary the index stays untrained and nothing needs loading.
        """
        path = self._vocabulary_path()
        if path is None or not path.exists():
            return np.zeros(0, np.int64)
        assert self.folder is not None
        vocab = Vocabulary.load(path, self.settings.nprobe)
        postings = WordIndex.open(self.folder / "words", vocab, self.settings)
        missing = postings.retain(live)
        with self._lock:
            self._postings = postings
        return np.asarray(missing, np.int64)

    def wait_idle(self) -> None:
        if self._postings is not None:
            self._postings.wait_idle()

    # ----------------------------------------------------------------------------- readers
    def search(self, photo: Features, scopes: Sequence[int], limit: int) -> list[Candidate]:
        """Targets ranked by idf-weighted shared words, best first."""
        postings = self._postings
        if postings is None:
            return []
        hits = postings.search(photo.descriptors, scopes, limit)
        return [Candidate(h.target, h.scope, h.score) for h in hits]

    def features(self, targets: Sequence[int]) -> dict[int, Features]:
        return {}

    def holds(self, target: int) -> bool:
        return self._postings is not None and not self._postings.removed(target)

    def __len__(self) -> int:
        return len(self._postings) if self._postings is not None else 0

    def memory_bytes(self) -> int:
        return self._postings.memory_bytes() if self._postings is not None else 0
