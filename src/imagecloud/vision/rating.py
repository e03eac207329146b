"""AddImage rating: how well will this image be recognised?

``matchratio`` is a self-test, not a feature count: the image is re-photographed by the seeded
camera simulator (tilt, scale, roll, blur, noise, exposure, JPEG) and each view's features are
matched back to the image's own features. A target feature counts as re-found in a view when its
nearest neighbour passes the ratio test *and* lands where the known view homography puts it.
``matchratio`` is the mean re-found fraction over the views. This punishes exactly what hurts
recognition: no texture (nothing detected), repetition (ambiguous neighbours fail the ratio test)
and pixel noise (gone after blur and downscaling).

``level`` is the banding below. ``richness`` is the number of keypoints kept on the working
image; both conditions of a row must hold, the highest satisfied row wins.

=====  ================  =============
level  matchratio >=     richness >=
=====  ================  =============
5      0.18              800
4      0.12              600
3      0.08              400
2      0.05              200
1      (anything else that is not rejected)
=====  ================  =============

Rejected with ``FeatureInsufficient``: fewer than 60 keypoints, or fewer than 20 re-found
features per view on average, or matchratio < 0.02. Such images (blank, smooth gradients,
checkerboards and tilings, random noise) would either never match or match ambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imagecloud.errors import FeatureInsufficient
from imagecloud.vision.features import FeatureExtractor, Features
from imagecloud.vision.simulate import ViewParams, simulate_view
from imagecloud.vision.verify import VerifySettings, match_descriptors

# (level, min matchratio, min richness), best first.
LEVEL_BANDS: tuple[tuple[int, float, int], ...] = (
    (5, 0.18, 800),
    (4, 0.12, 600),
    (3, 0.08, 400),
    (2, 0.05, 200),
)
MIN_KEYPOINTS = 60
MIN_REFOUND = 20
MIN_MATCHRATIO = 0.02

# Fixed views so a given image always gets the same rating: moderate, hard and rotated captures.
_VIEWS: tuple[ViewParams, ...] = (
    ViewParams(
        tilt_deg=25,
        scale=0.9,
        rotation_deg=20,
        blur_sigma=1.0,
        noise_sigma=3,
        brightness=0.9,
        jpeg_quality=80,
        background="flat",
    ),
    ViewParams(
        tilt_deg=35,
        scale=0.9,
        rotation_deg=-100,
        blur_sigma=1.2,
        noise_sigma=4,
        brightness=1.1,
        jpeg_quality=75,
        background="flat",
    ),
    ViewParams(
        tilt_deg=15,
        scale=0.7,
        rotation_deg=180,
        blur_sigma=0.8,
        noise_sigma=3,
        brightness=0.8,
        jpeg_quality=75,
        background="flat",
    ),
)
_REFOUND_TOLERANCE = 4.0  # pixels in the view


@dataclass(frozen=True)
class Rating:
    level: int
    matchratio: float
    refound: float  # mean re-found features per view


def band(matchratio: float, richness: int) -> int:
    for level, min_ratio, min_rich in LEVEL_BANDS:
        if matchratio >= min_ratio and richness >= min_rich:
            return level
    return 1


def rate(gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor) -> Rating:
    """Self-test of ``features`` (extracted from ``gray`` at ``scale``); raises FeatureInsufficient."""
    n = len(features)
    if n < MIN_KEYPOINTS:
        raise FeatureInsufficient(f"only {n} keypoints")
    found = [len(t_idx) for t_idx in _refound_per_view(gray, features, scale, extractor)]
    refound = float(np.mean(found))
    matchratio = float(min(1.0, refound / n))
    if refound < MIN_REFOUND or matchratio < MIN_MATCHRATIO:
        raise FeatureInsufficient(f"matchratio {matchratio:.3f}, {refound:.0f} features re-found per view")
    return Rating(level=band(matchratio, n), matchratio=round(matchratio, 4), refound=refound)


@dataclass(frozen=True, eq=False)
class SelfTest:
    """The self-test per keypoint: what the console draws to show *why* a target got its level."""

    counts: np.ndarray  # int (N,): in how many views each target keypoint was re-found (0..views)
    per_view: list[int]  # re-found matches per view, exactly the numbers ``rate`` averages
    views: int


def self_test(gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor) -> SelfTest:
    """The same simulated views as ``rate``, reported per keypoint instead of averaged."""
    counts = np.zeros(len(features), dtype=np.int64)
    per_view: list[int] = []
    for t_idx in _refound_per_view(gray, features, scale, extractor):
        per_view.append(len(t_idx))
        # Two view features may land on one target keypoint; it was still re-found once in this view.
        counts[np.unique(t_idx)] += 1
    return SelfTest(counts=counts, per_view=per_view, views=len(_VIEWS))


def _refound_per_view(
    gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor
) -> list[np.ndarray]:
    """For each fixed view: indices of target features re-found there (ratio test + right place)."""
    match_settings = VerifySettings(ratio=0.8)
    work_pts = features.points / np.float32(scale)  # target features in working-image pixels
    h, w = gray.shape[:2]
    out: list[np.ndarray] = []
    for seed, params in enumerate(_VIEWS):
        view = simulate_view(gray, params, seed=seed)
        vf = extractor.extract(view.image, 1.0, w, h)
        v_idx, t_idx = match_descriptors(vf, features, match_settings)
        if len(v_idx) == 0:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        src = np.hstack([work_pts[t_idx].astype(np.float64), np.ones((len(t_idx), 1))]) @ view.homography.T
        expected = src[:, :2] / src[:, 2:3]
        err = np.linalg.norm(expected - vf.points[v_idx], axis=1)
        out.append(np.asarray(t_idx)[err <= _REFOUND_TOLERANCE].astype(np.int64))
    return out
