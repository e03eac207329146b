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

from imagecloud.errors import FeatureInsufficient, ImageCloudError
from imagecloud.index.binary import BinaryVotingIndex, Candidate, IndexSettings
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features, FeatureSettings
from imagecloud.vision.rating import SelfTest, rate, self_test
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
    first_votes: int = 500  # photo descriptors in the first, cheap voting round
    first_verify: int = 2  # candidates of the first round verified before the remaining descriptors vote
    # Second pass, only for photos the first pass found nothing in: small, steep or low-contrast prints.
    second_pass: bool = True
    second_working_size: int = 1400  # long side the photo is re-analysed at, upsampled if need be
    second_max_upsample: float = 1.5  # tiny photos are not blown up further: they hold nothing more
    second_features: FeatureSettings = field(
        default_factory=lambda: FeatureSettings(candidates=10_000, keep=3000, fast_threshold=8)
    )


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
    data: bytes = b""  # the photo as sent, re-read at a higher resolution only by the second pass


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
        self._second_extractor = FeatureExtractor(self.settings.second_features)
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
            width=img.width, height=img.height, features=feats, gray=img.gray, scale=img.scale, data=data
        )

    def rate_query(self, query: QueryAnalysis) -> int:
        try:
            return rate(query.gray, query.features, query.scale, self._extractor).level
        except FeatureInsufficient:
            return 1

    def explain_target(self, data: bytes, features_blob: bytes) -> tuple[Features, SelfTest]:
        """A stored target's keypoints (original pixels) and how often each was re-found in the self-test.

        Re-runs the rating's fixed views on the stored original against the stored features, so the console
        can show where a target is weak; the stored level and matchratio are left as they are.
        """
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.target_working_size)
        feats = Features.from_bytes(features_blob)
        return feats, self_test(img.gray, feats, img.scale, self._extractor)

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

        Voting costs time linear in the number of photo descriptors, so it happens in two rounds: the
        first ``first_votes`` descriptors (spread over the photo) vote and their best candidates are
        verified with all of the photo's features; only when that does not settle the search do the
        remaining descriptors add their votes. Both rounds together cast exactly the votes one round
        would, so the slower path loses nothing.
        """
        s = self.settings
        wanted = max(1, max_results)
        limit = max(s.shortlist, wanted)
        desc = query.features.descriptors
        found: list[tuple[int, int, Match]] = []
        tried: set[int] = set()
        first = min(len(desc), s.first_votes)
        ballot = self._index.ballot(desc[:first], scopes)
        scale = first / max(1, len(desc))
        self._verify_candidates(query, ballot.top(s.first_verify), s.min_votes * scale, wanted, found, tried)
        if len(found) < wanted and first < len(desc):
            ballot = ballot + self._index.ballot(desc[first:], scopes)
            self._verify_candidates(query, ballot.top(limit), s.min_votes, wanted, found, tried)
        if not found and s.second_pass and query.data:
            self._second_pass(query, scopes, limit, wanted, found)
        return self._current_matches(found, wanted)

    def _second_pass(
        self,
        query: QueryAnalysis,
        scopes: Sequence[int],
        limit: int,
        wanted: int,
        found: list[tuple[int, int, Match]],
    ) -> None:
        """Re-analyse the photo larger and denser, then vote and verify again.

        A print filling 15-30% of the frame, or seen at a steep angle, leaves only a few dozen of the
        first pass's keypoints on the print, and its fine detail sits below the smallest scale the
        800-px analysis sees. Upsampled to 1400 px with a lower FAST threshold and 3,000 keypoints, the
        same print gets enough correspondences to verify. The usual verification decides, so this adds
        reach, not risk; it costs several times the first pass and so runs only when that found nothing.
        """
        s = self.settings
        try:
            img = decode_image(query.data, max_pixels=s.max_pixels, working_size=s.second_working_size)
        except ImageCloudError:
            return
        gray, scale = img.gray, img.scale
        long_side = max(gray.shape)
        factor = min(s.second_max_upsample, s.second_working_size / long_side)
        if factor > 1.01:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            scale /= factor
        feats = self._second_extractor.extract(gray, scale, img.width, img.height)
        if len(feats) < s.min_query_keypoints:
            return
        dense = QueryAnalysis(
            width=img.width, height=img.height, features=feats, gray=gray, scale=scale, data=b""
        )
        candidates = self._index.ballot(feats.descriptors, scopes).top(limit)
        self._verify_candidates(dense, candidates, s.min_votes, wanted, found, set())

    def _verify_candidates(
        self,
        query: QueryAnalysis,
        candidates: Sequence[Candidate],
        min_votes: float,
        wanted: int,
        found: list[tuple[int, int, Match]],
        tried: set[int],
    ) -> None:
        s = self.settings
        for cand in candidates:
            if cand.votes < min_votes or len(found) >= wanted:
                break
            if cand.entry in tried:
                continue
            tried.add(cand.entry)
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

    def _current_matches(self, found: list[tuple[int, int, Match]], wanted: int) -> list[Match]:
        found = sorted(found, key=lambda f: -f[1])
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
