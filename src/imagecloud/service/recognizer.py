"""The one entry point the service layer uses for recognition.

Puts together the three parts, each with its own module: analysis of targets and photos
(:mod:`imagecloud.vision.analysis`), the index of enrolled targets with its routing of scopes
(:mod:`imagecloud.index.tiered`, behind :class:`imagecloud.index.base.Index`) and the search that verifies
and accepts candidates (:mod:`imagecloud.recognition.search`). Their tuning values are the defaults of
:class:`imagecloud.recognition.settings.RecognizerSettings`, which the server's settings override
(:mod:`imagecloud.config`).

Every method is synchronous and thread-safe; the service calls them from a worker pool, which is where
parallelism comes from, so OpenCV and FAISS are told to use one thread each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import faiss
import numpy as np

from imagecloud.index.tiered import TieredIndex
from imagecloud.index.words import WordIndex
from imagecloud.recognition.search import FeatureCache, FeatureSource, Match, Searcher
from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.storage.featurestore import FeatureStore
from imagecloud.vision.analysis import Analyser, QueryAnalysis, TargetAnalysis
from imagecloud.vision.features import Features
from imagecloud.vision.rating import SelfTest

cv2.setNumThreads(1)
faiss.omp_set_num_threads(1)

__all__ = [
    "FeatureSource",
    "Match",
    "QueryAnalysis",
    "Recognition",
    "Recognizer",
    "RecognizerSettings",
    "TargetAnalysis",
]


class Recognition(Protocol):
    """What the service needs of recognition: analysis here, the index and its searches wherever they live.

    :class:`Recognizer` keeps the index in this process (the embedded default);
    :class:`imagecloud.cluster.recognizer.ClusterRecognizer` keeps it in index shards on a Ray cluster.
    """

    settings: RecognizerSettings

    def analyse_target(self, data: bytes) -> TargetAnalysis: ...

    def analyse_query(self, data: bytes) -> QueryAnalysis: ...

    def rate_query(self, query: QueryAnalysis) -> int: ...

    def explain_target(self, data: bytes, features_blob: bytes) -> tuple[Features, SelfTest]: ...

    def start(self, store: FeatureStore) -> None: ...

    def stop(self) -> None: ...

    def dependencies(self) -> dict[str, dict[str, Any]]: ...

    def add(self, scope: int, target_id: int, features_blob: bytes) -> None:
        """Returns once a search finds the target; raising means it may or may not be searchable."""

    def remove(self, scope: int, target_id: int) -> None:
        """Returns once no search finds the target."""

    def drop_scope(self, scope: int) -> None: ...

    def search(self, query: QueryAnalysis, scopes: Sequence[int], max_results: int = 1) -> list[Match]: ...

    def similar(self, query: QueryAnalysis, scopes: Sequence[int], limit: int) -> list[Match]: ...

    @property
    def restored(self) -> int: ...

    def __len__(self) -> int: ...


class Analysing:
    """The analysis half of :class:`Recognition`: done in this process, wherever the index lives."""

    analyser: Analyser

    def analyse_target(self, data: bytes) -> TargetAnalysis:
        return self.analyser.analyse_target(data)

    def analyse_query(self, data: bytes) -> QueryAnalysis:
        return self.analyser.analyse_query(data)

    def rate_query(self, query: QueryAnalysis) -> int:
        return self.analyser.rate_query(query)

    def explain_target(self, data: bytes, features_blob: bytes) -> tuple[Features, SelfTest]:
        return self.analyser.explain_target(data, features_blob)


class Recognizer(Analysing):
    """Analysis, indexing and search of targets.

    ``feature_source`` reads stored features of word-index candidates when they are verified; with
    ``index_dir`` the indexes are kept on disk between runs. With ``indexing=False`` targets are analysed
    but not indexed (adds and removes do nothing, searches find nothing): for a process that stores
    targets for a server to index, and never searches.
    """

    def __init__(
        self,
        settings: RecognizerSettings | None = None,
        feature_source: FeatureSource | None = None,
        index_dir: Path | None = None,
        *,
        indexing: bool = True,
    ) -> None:
        self.settings = settings or RecognizerSettings()
        self.analyser = Analyser(self.settings.analysis)
        self.indexing = indexing
        self.index = TieredIndex(self.settings.index, index_dir)
        cache = FeatureCache(self.settings.search.feature_cache, feature_source)
        self.searcher = Searcher(self.settings.search, self.analyser, self.index, cache)

    @property
    def feature_source(self) -> FeatureSource | None:
        return self.searcher.cache.source

    @feature_source.setter
    def feature_source(self, source: FeatureSource | None) -> None:
        self.searcher.cache.source = source

    # ----------------------------------------------------------------------------- start and stop
    def start(self, store: FeatureStore) -> None:
        """Load the index from the stored targets, reusing what the index folder kept since the last run.

        Candidates whose features the index does not keep in RAM are read from ``store`` from now on.
        """
        if self.feature_source is None:
            self.feature_source = store.by_id
        if not self.indexing:
            return
        counts, live = store.census()
        missing = self.open_words(counts, live)
        if missing:
            # Targets added since the word index was last saved (or all of them, after a crash before any
            # save): their stored features are re-read and indexed by words.
            self.add_words(store.stream(ids=missing))
            self.save_words()
        self.load(store.stream(skip_channels=self.word_scopes()))

    def stop(self) -> None:
        """Orderly shutdown: save the word index so the next start reads it instead of rebuilding it."""
        if self.indexing:
            self.save_words()

    def dependencies(self) -> dict[str, dict[str, Any]]:
        """Parts outside this process that recognition needs (none: the index is in this process)."""
        return {}

    # ----------------------------------------------------------------------------- index upkeep
    def add(self, scope: int, target_id: int, features_blob: bytes) -> None:
        if self.indexing:
            self.index.add(scope, target_id, features_blob)

    def remove(self, scope: int, target_id: int) -> None:
        if self.indexing:
            self.index.remove(target_id, scope)
            self.searcher.cache.forget(target_id)

    def drop_scope(self, scope: int) -> None:
        if self.indexing:
            self.index.drop_scope(scope)

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Start-up: bulk insert ``(scope, target_id, features)`` of the scopes the exact index serves."""
        if self.indexing:
            self.index.load(items)

    def open_words(self, counts: dict[int, int], live: np.ndarray) -> list[int]:
        """Start-up: open the saved word index, if any, and reconcile it with ``live`` (every target id).

        ``counts`` are the targets per scope in the database. Returns the live target ids the saved index
        does not hold; the caller feeds their features to :meth:`add_words`. Scopes at or above the
        threshold are then served by the word index and must not be given to :meth:`load`.
        """
        if not self.indexing:
            return []
        return [int(t) for t in self.index.open(live, counts)]

    def add_words(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert ``(scope, target_id, features)`` into the word index only."""
        self.index.load_words(items)

    def save_words(self) -> None:
        """Write the word index next to its vocabulary, so the next start does not rebuild it."""
        self.index.words.save()

    def word_scopes(self) -> set[int]:
        return self.index.word_scopes()

    @property
    def words(self) -> WordIndex | None:
        """The word index's postings, once a vocabulary exists (statistics for benchmarks)."""
        return self.index.words.postings

    @property
    def restored(self) -> int:
        """Targets the last load took from the saved segments instead of indexing them."""
        return self.index.restored

    def wait_idle(self) -> None:
        """Block until background work of both indexes has finished (tests, benchmarks)."""
        self.index.wait_idle()

    def wait_words(self) -> None:
        """Block until a vocabulary training started by growth has finished (tests, benchmarks)."""
        self.index.wait_words()

    def wait_saved(self) -> None:
        """Block until upkeep and the last background save of the exact index are done (tests, benchmarks)."""
        self.index.exact.wait_saved()

    def __len__(self) -> int:
        return len(self.index)

    def memory_bytes(self) -> int:
        """Approximate RAM of the indexes plus the features kept for verification."""
        return self.index.memory_bytes()

    # ----------------------------------------------------------------------------- search
    def search(self, query: QueryAnalysis, scopes: Sequence[int], max_results: int = 1) -> list[Match]:
        """Accepted matches, most prominent first; ``[]`` when nothing is accepted (see
        :mod:`imagecloud.recognition.search`)."""
        return self.searcher.search(query, scopes, max_results)

    def similar(self, query: QueryAnalysis, scopes: Sequence[int], limit: int) -> list[Match]:
        """Every target the photo is accepted as, best score first, even where targets compete."""
        return self.searcher.similar(query, scopes, limit)
