"""The one entry point the service layer uses for recognition.

Glues vision (decode, features, rating, verification) to the index. Every method is synchronous
and thread-safe; the service calls them from a worker pool, which is where parallelism comes from,
so OpenCV and FAISS are told to use one thread each.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import faiss
import numpy as np

from imagecloud.errors import FeatureInsufficient
from imagecloud.index.binary import BinaryVotingIndex, IndexSettings
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features, FeatureSettings
from imagecloud.vision.rating import rate
from imagecloud.vision.verify import VerifySettings, verify

cv2.setNumThreads(1)
faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class RecognizerSettings:
    max_pixels: int = 40_000_000
    target_working_size: int = 640  # long side targets are analysed at
    query_working_size: int = 800  # long side photos are analysed at
    features: FeatureSettings = field(default_factory=FeatureSettings)  # for targets (what is stored)
    # Photos keep more keypoints than targets: each side keeps only a subset of its FAST candidates,
    # and a larger photo-side subset raises the chance both sides kept the same physical corners.
    query_features: FeatureSettings = field(default_factory=lambda: FeatureSettings(keep=1500))
    index: IndexSettings = field(default_factory=IndexSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    shortlist: int = 10  # candidates geometrically verified per search
    min_query_keypoints: int = 40  # fewer and a photo cannot be searched (FeatureInsufficient)
    min_votes: float = 8.0  # candidates with fewer descriptor votes are not worth verifying


@dataclass(frozen=True)
class TargetAnalysis:
    features_blob: bytes
    level: int
    matchratio: float
    width: int
    height: int
    format: str


@dataclass(frozen=True, eq=False)
class QueryAnalysis:
    """Opaque to the service except ``width``/``height``."""

    width: int
    height: int
    features: Features
    gray: np.ndarray
    scale: float


@dataclass(frozen=True)
class Match:
    target_id: int
    scope: int
    score: float
    corners: list[list[float]]


@dataclass(frozen=True, eq=False)
class _Entry:
    scope: int
    target_id: int
    features: Features


class Recognizer:
    def __init__(self, settings: RecognizerSettings | None = None) -> None:
        self.settings = settings or RecognizerSettings()
        self._extractor = FeatureExtractor(self.settings.features)
        self._query_extractor = FeatureExtractor(self.settings.query_features)
        self._index = BinaryVotingIndex(self.settings.index)
        self._lock = threading.Lock()  # guards the two maps below; never held during vision work
        self._entries: dict[int, _Entry] = {}
        self._current: dict[tuple[int, int], int] = {}  # (scope, target_id) -> entry
        self._serial = itertools.count(1)

    # ----------------------------------------------------------------------------- analysis
    def analyse_target(self, data: bytes) -> TargetAnalysis:
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.target_working_size)
        feats = self._extractor.extract(img.gray, img.scale, img.width, img.height)
        rating = rate(img.gray, feats, img.scale, self._extractor)
        return TargetAnalysis(
            features_blob=feats.to_bytes(),
            level=rating.level,
            matchratio=rating.matchratio,
            width=img.width,
            height=img.height,
            format=img.format,
        )

    def analyse_query(self, data: bytes) -> QueryAnalysis:
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.query_working_size)
        feats = self._query_extractor.extract(img.gray, img.scale, img.width, img.height)
        if len(feats) < s.min_query_keypoints:
            raise FeatureInsufficient(f"only {len(feats)} keypoints in the photo")
        return QueryAnalysis(
            width=img.width, height=img.height, features=feats, gray=img.gray, scale=img.scale
        )

    def rate_query(self, query: QueryAnalysis) -> int:
        try:
            return rate(query.gray, query.features, query.scale, self._extractor).level
        except FeatureInsufficient:
            return 1

    # ----------------------------------------------------------------------------- index upkeep
    def add(self, scope: int, target_id: int, features_blob: bytes) -> None:
        feats = Features.from_bytes(features_blob)
        entry = next(self._serial)
        with self._lock:
            old = self._current.get((scope, target_id))
            self._entries[entry] = _Entry(scope, target_id, feats)
        self._index.add(scope, entry, feats.descriptors)
        with self._lock:
            # A replaced image (same id) is retired only once its successor is searchable.
            self._current[(scope, target_id)] = entry
        if old is not None:
            self._retire(scope, old)

    def remove(self, scope: int, target_id: int) -> None:
        with self._lock:
            entry = self._current.pop((scope, target_id), None)
        if entry is not None:
            self._retire(scope, entry)

    def _retire(self, scope: int, entry: int) -> None:
        self._index.remove(scope, entry)
        with self._lock:
            self._entries.pop(entry, None)

    def drop_scope(self, scope: int) -> None:
        with self._lock:
            keys = [k for k in self._current if k[0] == scope]
            for k in keys:
                self._entries.pop(self._current.pop(k), None)
        self._index.drop_scope(scope)

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        rows: list[tuple[int, int, np.ndarray]] = []
        retired: list[tuple[int, int]] = []
        with self._lock:
            for scope, target_id, blob in items:
                feats = Features.from_bytes(blob)
                entry = next(self._serial)
                old = self._current.get((scope, target_id))
                if old is not None:
                    retired.append((scope, old))
                self._entries[entry] = _Entry(scope, target_id, feats)
                self._current[(scope, target_id)] = entry
                rows.append((scope, entry, feats.descriptors))
        self._index.load(rows)
        for scope, old in retired:
            self._retire(scope, old)

    def __len__(self) -> int:
        with self._lock:
            return len(self._current)

    def memory_bytes(self) -> int:
        """Approximate RAM of the index plus the features kept for verification."""
        with self._lock:
            feats = sum(len(e.features) * 42 for e in self._entries.values())
        return feats + self._index.memory_bytes()

    # ----------------------------------------------------------------------------- search
    def search(self, query: QueryAnalysis, scopes: Sequence[int], max_results: int = 1) -> list[Match]:
        """Verified matches, most inliers first; ``[]`` when nothing passes verification.

        Candidates are verified in vote order and the search stops once ``max_results`` distinct
        targets have passed: verification, not the vote, decides what is returned, so a later
        candidate can only add another correct answer, and skipping it saves most of the cost.
        """
        s = self.settings
        wanted = max(1, max_results)
        candidates = self._index.shortlist(query.features.descriptors, scopes, max(s.shortlist, wanted))
        found: list[tuple[int, int, Match]] = []
        for cand in candidates:
            if cand.votes < s.min_votes or len(found) >= wanted:
                break
            with self._lock:
                e = self._entries.get(cand.entry)
            if e is None:
                continue
            v = verify(query.features, e.features, s.verify)
            if v is not None:
                found.append(
                    (
                        cand.entry,
                        v.inliers,
                        Match(target_id=e.target_id, scope=e.scope, score=v.score, corners=v.corners),
                    )
                )
        found.sort(key=lambda f: -f[1])
        out: list[Match] = []
        seen: set[tuple[int, int]] = set()
        with self._lock:
            # Re-checked under the lock: a target removed while this search ran is not returned.
            for entry, _, m in found:
                key = (m.scope, m.target_id)
                if self._current.get(key) == entry and key not in seen:
                    seen.add(key)
                    out.append(m)
        return out[:wanted]
