"""Is a plausible view of a target evidence that the photo shows *this* print? The rule and its score.

Geometric verification (:mod:`imagecloud.vision.verify`) finds a homography a camera could have produced,
supported by a few dozen correspondences. That also happens between two different photos of similar
subjects: another butterfly of the same species, another dog of the same breed. Their wings or faces are
nearly flat and nearly alike, so a part of the target lines up with a part of the photo. A photo of the
print itself differs in two ways that do not depend on the subject:

* **Coverage.** The correspondences come from all over the part of the target the photo shows, not from
  one region of it. The target is cut into an 8 by 8 grid; a cell counts when the photo can resolve some of
  its keypoints (projected inside the frame, at a scale the photo's analysis detects: neither below its
  finest pyramid level nor above its coarsest). ``coverage`` is the share of those cells that hold an
  inlier. A similar subject fills only its own region of the target (the butterfly, not the leaves around
  it); a print, even half hidden, is matched wherever it is seen.
* **Re-finding.** Predicted by the homography, the target's resolvable keypoints are looked up in the
  photo: a photo keypoint within 3 working pixels whose descriptor is within 64 of 256 bits. ``refound``
  is the share found. Detail of the same print is found where the homography says; the fine detail of
  another individual is not, even where the coarse pattern agrees.
* **Precision.** Of the keypoints re-found within 3 pixels, the share within 1 pixel. A corner of the same
  print is detected again where it was, to about a pixel; where another individual's pattern only resembles
  the target's, the re-found points spread over the whole 3-pixel disk. Spread evenly, 1/9 of them (the
  area ratio of the two disks) would fall inside 1 pixel; ``min_precision`` is twice that. Measured on the
  development sets, photos of the print had a 1st percentile of 0.31 (real and simulated photos alike),
  views of other individuals of one species a median of 0.21. Like the other two, it is a share, so it
  does not depend on how much of the print is seen.

Coverage and re-finding are shares of what the photo could show, so a print far away, steeply tilted or
half occluded is judged on the part that is visible at a resolvable scale, not penalised for the rest.

``score`` is ``1 - 0.5 ** (z * z)`` with ``z`` the weakest of ``coverage / min_coverage``,
``refound / min_refound`` and ``precision / min_precision``: exactly 0.5 where the weakest criterion sits
at its minimum, 0.94 at twice it, 0.16 at half of it. A match is accepted at ``min_score`` (0.5). The
benchmark reports how the score of right and wrong answers is distributed and what each threshold would
keep (``imagecloud bench recognition``, ``bench/results/``).

A further rule, :func:`competing`, works across candidates: two different targets cannot both be the print
at one place in a photo. When another target also makes a plausible view over the same region, the photo
shows a subject that several targets share, and the answer is nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from imagecloud.vision.features import Features, FeatureSettings
from imagecloud.vision.verify import Geometry

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
# The pyramid every analysis uses: what a photo can resolve runs from its finest level to its coarsest.
_PYRAMID = FeatureSettings()


@dataclass(frozen=True)
class AcceptanceSettings:
    grid: int = 8  # cells per target side for coverage
    min_coverage: float = 0.25  # share of the target's resolvable cells holding an inlier
    min_refound: float = 0.05  # share of the target's resolvable keypoints re-found where predicted
    refind_radius: float = 3.0  # photo working pixels around the predicted position
    refind_hamming: int = 64  # of 256 bits
    precise_radius: float = 1.0  # photo working pixels: how exactly a print's corner is detected again
    # Share of the re-found keypoints within precise_radius: twice the share chance gives, which is the area
    # ratio of the two disks, (1/3)^2.
    min_precision: float = 2.0 / 9.0
    min_score: float = 0.5
    overlap: float = 0.25  # two views compete when they share this much of the smaller one's area


@dataclass(frozen=True)
class Assessment:
    score: float  # 0..1, 0.5 where the weaker criterion sits at its minimum
    accepted: bool
    coverage: float
    refound: float
    inliers: int
    resolvable: int  # target keypoints the photo could show
    precision: float = 1.0  # share of the re-found keypoints found within precise_radius


def assess(
    query: Features,
    query_scale: float,
    target: Features,
    target_scale: float,
    geometry: Geometry,
    settings: AcceptanceSettings,
) -> Assessment:
    """Coverage and re-finding of ``target`` in ``query`` under ``geometry``, and the decision.

    ``query_scale`` and ``target_scale`` are original pixels per working pixel of each side's analysis:
    they say at which scale each keypoint was detected, hence whether the photo can resolve it at all.
    """
    H = geometry.homography
    resolvable = _resolvable(target, target_scale, query, query_scale, H)
    n = int(resolvable.sum())
    if n == 0:
        return Assessment(0.0, False, 0.0, 0.0, geometry.inliers, 0)
    coverage = _coverage(target, resolvable, geometry.target_idx, settings.grid)
    refound, precision = _refound(target, query, query_scale, H, np.nonzero(resolvable)[0], settings)
    score = score_of(coverage, refound, settings, precision)
    return Assessment(score, score >= settings.min_score, coverage, refound, geometry.inliers, n, precision)


def score_of(coverage: float, refound: float, settings: AcceptanceSettings, precision: float = 1.0) -> float:
    """``1 - 0.5 ** (z * z)``, ``z`` the weakest criterion's multiple of its minimum: 0.5 at the minimum."""
    z = min(
        coverage / settings.min_coverage,
        refound / settings.min_refound,
        precision / settings.min_precision,
    )
    return float(1.0 - 0.5 ** (z * z))


def competing(a: np.ndarray, b: np.ndarray, overlap: float) -> bool:
    """Do two targets' outlines in the photo cover the same place (``overlap`` of the smaller one)?"""
    qa = np.asarray(a, dtype=np.float32).reshape(-1, 2)
    qb = np.asarray(b, dtype=np.float32).reshape(-1, 2)
    area_a = abs(float(cv2.contourArea(qa)))
    area_b = abs(float(cv2.contourArea(qb)))
    if min(area_a, area_b) <= 0:
        return False
    shared, _ = cv2.intersectConvexConvex(qa, qb)
    return float(shared) >= overlap * min(area_a, area_b)


def _project(H: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hom = np.hstack([points.astype(np.float64), np.ones((len(points), 1))]) @ H.T
    w = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        projected = hom[:, :2] / w[:, None]
    return projected, w


def _resolvable(
    target: Features, target_scale: float, query: Features, query_scale: float, H: np.ndarray
) -> np.ndarray:
    """Target keypoints that land in the photo at a scale its analysis detects."""
    projected, w = _project(H, target.points)
    inside = (
        (w > 1e-9)
        & np.isfinite(projected).all(axis=1)
        & (projected[:, 0] >= 0)
        & (projected[:, 0] < query.width)
        & (projected[:, 1] >= 0)
        & (projected[:, 1] < query.height)
    )
    # Linear magnification of the homography at each point: sqrt(|det J|) = sqrt(|det H| / w^3).
    with np.errstate(divide="ignore", invalid="ignore"):
        magnification = np.sqrt(abs(float(np.linalg.det(H))) / np.abs(w) ** 3)
    size = (
        _PYRAMID.scale_factor ** target.octaves.astype(np.float64)
        * target_scale
        * magnification
        / query_scale
    )
    resolvable: np.ndarray = inside & (size >= 1.0) & (size <= _PYRAMID.scale_factor ** (_PYRAMID.levels - 1))
    return resolvable


def _cells(points: np.ndarray, width: int, height: int, grid: int) -> np.ndarray:
    cx = np.clip((points[:, 0] * grid / width).astype(np.int64), 0, grid - 1)
    cy = np.clip((points[:, 1] * grid / height).astype(np.int64), 0, grid - 1)
    cells: np.ndarray = cy * grid + cx
    return cells


def _coverage(target: Features, resolvable: np.ndarray, inlier_idx: np.ndarray, grid: int) -> float:
    seen = set(_cells(target.points[resolvable], target.width, target.height, grid).tolist())
    hit = set(_cells(target.points[inlier_idx], target.width, target.height, grid).tolist()) & seen
    return len(hit) / len(seen) if seen else 0.0


def _refound(
    target: Features,
    query: Features,
    query_scale: float,
    H: np.ndarray,
    candidates: np.ndarray,
    settings: AcceptanceSettings,
) -> tuple[float, float]:
    """``refound`` and ``precision``: the share of ``candidates`` found again near their predicted place,
    and the share of those found within ``precise_radius``."""
    if len(candidates) == 0 or len(query) == 0:
        return 0.0, 0.0
    predicted, _ = _project(H, target.points[candidates])
    index = faiss.IndexFlatL2(2)
    index.add(np.ascontiguousarray(query.points, dtype=np.float32))
    radius = settings.refind_radius * query_scale
    lims, dist2, near = index.range_search(np.ascontiguousarray(predicted, dtype=np.float32), radius * radius)
    counts = np.diff(lims).astype(np.int64)
    if counts.sum() == 0:
        return 0.0, 0.0
    owner = np.repeat(np.arange(len(candidates)), counts)
    bits = target.descriptors[candidates[owner]] ^ query.descriptors[near.astype(np.int64)]
    close = _POPCOUNT[bits].sum(axis=1) <= settings.refind_hamming
    found = np.unique(owner[close])
    if len(found) == 0:
        return 0.0, 0.0
    precise_radius = settings.precise_radius * query_scale
    precise = np.unique(owner[close & (dist2 <= precise_radius * precise_radius)])
    return len(found) / len(candidates), len(precise) / len(found)
