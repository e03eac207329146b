"""One way to analyse a target or a photo: decode, features, rating.

The server, the importer's worker processes and the benchmarks all analyse through :class:`Analyser`, so a
target enrolled by any of them is described the same way. Targets and photos are analysed differently on
purpose (see :class:`AnalysisSettings`); a photo that matched nothing can be analysed again, larger and
denser, for the second pass of a search (:meth:`Analyser.second_look`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from imagecloud.errors import FeatureInsufficient, ImageCloudError
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features, FeatureSettings
from imagecloud.vision.rating import SelfTest, rate, rate_and_test, self_test


@dataclass(frozen=True)
class AnalysisSettings:
    max_pixels: int = 40_000_000  # larger images are refused before they are decoded
    target_working_size: int = 640  # long side targets are analysed at
    query_working_size: int = 800  # long side photos are analysed at
    features: FeatureSettings = field(default_factory=FeatureSettings)  # for targets (what is stored)
    # Photos keep more keypoints than targets: each side keeps only a subset of its FAST candidates,
    # and a larger photo-side subset raises the chance both sides kept the same physical corners.
    query_features: FeatureSettings = field(default_factory=lambda: FeatureSettings(keep=1500))
    min_query_keypoints: int = 40  # fewer and a photo cannot be searched (FeatureInsufficient)
    # The second look at a photo (see Analyser.second_look).
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
    data: bytes = b""  # the photo as sent, re-read at a higher resolution only by the second look


class Analyser:
    """Analysis of targets and photos under one set of settings; thread-safe, holds no state per image."""

    def __init__(self, settings: AnalysisSettings | None = None) -> None:
        self.settings = settings or AnalysisSettings()
        self._extractor = FeatureExtractor(self.settings.features)
        self._query_extractor = FeatureExtractor(self.settings.query_features)
        self._second_extractor = FeatureExtractor(self.settings.second_features)

    def analyse_target(self, data: bytes) -> TargetAnalysis:
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.target_working_size)
        feats = self._extractor.extract(img.gray, img.scale, img.width, img.height)
        rating, test = rate_and_test(img.gray, feats, img.scale, self._extractor)
        return TargetAnalysis(
            # The self-test's per-keypoint counts are kept: the large-scale index indexes a target by its most
            # repeatable descriptors.
            features_blob=feats.with_repeatability(test.counts).to_bytes(),
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

    def second_look(self, query: QueryAnalysis) -> QueryAnalysis | None:
        """The photo analysed again, larger and denser; None if it cannot be (no bytes, too few keypoints).

        A print filling 15-30% of the frame, or seen at a steep angle, leaves only a few dozen of the
        first analysis's keypoints on the print, and its fine detail sits below the smallest scale the
        800-px analysis sees. Upsampled to 1400 px with a lower FAST threshold and 3,000 keypoints, the
        same print gets enough correspondences to verify.
        """
        s = self.settings
        if not query.data:
            return None
        try:
            img = decode_image(query.data, max_pixels=s.max_pixels, working_size=s.second_working_size)
        except ImageCloudError:
            return None
        gray, scale = img.gray, img.scale
        long_side = max(gray.shape)
        factor = min(s.second_max_upsample, s.second_working_size / long_side)
        if factor > 1.01:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            scale /= factor
        feats = self._second_extractor.extract(gray, scale, img.width, img.height)
        if len(feats) < s.min_query_keypoints:
            return None
        return QueryAnalysis(width=img.width, height=img.height, features=feats, gray=gray, scale=scale)

    def target_scale(self, target: Features) -> float:
        """Original pixels per working pixel of a stored target (what its features were extracted at)."""
        return max(1.0, max(target.width, target.height) / self.settings.target_working_size)
