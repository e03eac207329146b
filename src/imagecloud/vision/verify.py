"""Geometric verification: could this target be in the photo, and where?

Descriptor votes only shortlist. A target passes when enough correspondences agree on one
homography that a real camera could have produced (convex, right-handed, sane size and
perspective) and on the keypoint orientations that homography implies. Without these plausibility
checks wrong targets routinely reach dozens of "inliers" on repeated texture or clutter.

Passing is necessary, not sufficient: a different photo of a similar subject (another butterfly of
the same species) also yields a plausible homography with dozens of inliers. Whether the geometry
is evidence of *this* print is decided in :mod:`imagecloud.recognition.acceptance`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from imagecloud.vision.features import Features


@dataclass(frozen=True)
class VerifySettings:
    ratio: float = 0.85  # Lowe ratio between best and second-best match within the target
    max_hamming: int = 80  # of 256 bits
    reproj_fraction: float = 0.008  # MAGSAC threshold as a fraction of the photo's long side
    min_inliers: int = 16
    angle_tolerance: float = 25.0  # degrees between predicted and observed keypoint rotation
    min_area_fraction: float = 0.002  # target quad area / photo area
    max_area_fraction: float = 25.0
    max_perspective: float = 6.0  # max/min local scale over the target's corners
    max_aspect_change: float = 4.0
    min_inlier_spread: float = 0.02  # inlier convex hull / target area


@dataclass(frozen=True, eq=False)
class Geometry:
    """A plausible camera view of the target: the homography and the correspondences that agree with it."""

    homography: np.ndarray  # 3x3, target pixels -> photo pixels (original pixels on both sides)
    query_idx: np.ndarray  # inlier keypoints of the photo
    target_idx: np.ndarray  # and of the target, pairwise
    tentative: int  # correspondences the homography was estimated from
    corners: np.ndarray  # target TL, TR, BR, BL in photo pixels, (4, 2)

    @property
    def inliers(self) -> int:
        return len(self.query_idx)


def match_descriptors(
    query: Features, target: Features, settings: VerifySettings
) -> tuple[np.ndarray, np.ndarray]:
    """Query->target nearest neighbours passing the ratio test; returns (query_idx, target_idx)."""
    if len(query) < 2 or len(target) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # FAISS' popcount scan is ~5x faster than cv2.BFMatcher.knnMatch plus its per-DMatch Python objects.
    index = faiss.IndexBinaryFlat(target.descriptors.shape[1] * 8)
    index.add(np.ascontiguousarray(target.descriptors))
    dist, nn = index.search(np.ascontiguousarray(query.descriptors), 2)
    ok = (dist[:, 0] <= settings.max_hamming) & (dist[:, 0] < settings.ratio * dist[:, 1])
    q = np.nonzero(ok)[0].astype(np.int64)
    t = nn[ok, 0].astype(np.int64)
    if len(t):
        # One query point per target point (the closest): many-to-one mappings come from repeated texture.
        by_dist = np.argsort(dist[ok, 0], kind="stable")
        q, t = q[by_dist], t[by_dist]
        _, first = np.unique(t, return_index=True)
        q, t = q[first], t[first]
    return q, t


def verify(query: Features, target: Features, settings: VerifySettings) -> Geometry | None:
    """The target's plausible view in the photo, or None when the correspondences do not make one."""
    q_idx, t_idx = match_descriptors(query, target, settings)
    if len(q_idx) < settings.min_inliers:
        return None
    src = target.points[t_idx].astype(np.float64)
    dst = query.points[q_idx].astype(np.float64)
    thr = settings.reproj_fraction * max(query.width, query.height)
    H, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, thr, maxIters=2000, confidence=0.999)
    if H is None or mask is None:
        return None
    inl = mask.ravel().astype(bool)
    if int(inl.sum()) < settings.min_inliers:
        return None
    corners = _plausible_corners(H, target, query, settings)
    if corners is None:
        return None
    inl &= _orientation_consistent(H, src, target.angles[t_idx], query.angles[q_idx], settings)
    count = int(inl.sum())
    if count < settings.min_inliers:
        return None
    if not _spread_enough(src[inl], target, settings):
        return None
    return Geometry(
        homography=H, query_idx=q_idx[inl], target_idx=t_idx[inl], tentative=len(q_idx), corners=corners
    )


def _plausible_corners(
    H: np.ndarray, target: Features, query: Features, s: VerifySettings
) -> np.ndarray | None:
    w, h = float(target.width), float(target.height)
    box = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    hom = np.hstack([box, np.ones((4, 1))]) @ H.T
    if np.any(hom[:, 2] <= 1e-9):  # a corner behind the camera
        return None
    quad = hom[:, :2] / hom[:, 2:3]
    if not np.all(np.isfinite(quad)):
        return None
    # Convex and with the same (clockwise in image coordinates) winding as the target: a mirror
    # image or a bow-tie cannot be a photo of a flat print.
    edges = np.roll(quad, -1, axis=0) - quad
    nxt = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0]
    if not np.all(cross > 0):
        return None
    area = 0.5 * float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1]))
    photo_area = float(query.width * query.height)
    if not s.min_area_fraction * photo_area <= area <= s.max_area_fraction * photo_area:
        return None
    # Local scale (Jacobian determinant) at each corner: strong disagreement means a perspective
    # more extreme than anyone photographs a poster with.
    det = float(np.linalg.det(H))
    local = np.abs(det) / np.abs(hom[:, 2]) ** 3
    if local.min() <= 0 or local.max() / local.min() > s.max_perspective**2:
        return None
    sides = np.linalg.norm(edges, axis=1)
    if sides.min() <= 1.0:
        return None
    # Opposite sides and overall aspect must stay within a factor of each other.
    if max(sides[0], sides[2]) / min(sides[0], sides[2]) > s.max_perspective:
        return None
    if max(sides[1], sides[3]) / min(sides[1], sides[3]) > s.max_perspective:
        return None
    aspect_target = w / h
    aspect_quad = (sides[0] + sides[2]) / (sides[1] + sides[3])
    change = aspect_quad / aspect_target
    if not 1.0 / s.max_aspect_change <= change <= s.max_aspect_change:
        return None
    return np.asarray(quad, dtype=np.float64)


def _orientation_consistent(
    H: np.ndarray, src: np.ndarray, t_angle: np.ndarray, q_angle: np.ndarray, s: VerifySettings
) -> np.ndarray:
    """Keypoint orientations must rotate the way the homography rotates the image around them."""
    eps = 4.0
    p = np.hstack([src, np.ones((len(src), 1))])
    theta = np.deg2rad(t_angle.astype(np.float64))
    p2 = np.hstack([src + eps * np.stack([np.cos(theta), np.sin(theta)], axis=1), np.ones((len(src), 1))])
    a = p @ H.T
    b = p2 @ H.T
    a = a[:, :2] / a[:, 2:3]
    b = b[:, :2] / b[:, 2:3]
    predicted = np.rad2deg(np.arctan2(b[:, 1] - a[:, 1], b[:, 0] - a[:, 0]))
    diff = np.abs((predicted - q_angle.astype(np.float64) + 180.0) % 360.0 - 180.0)
    ok: np.ndarray = diff <= s.angle_tolerance
    return ok


def _spread_enough(points: np.ndarray, target: Features, s: VerifySettings) -> bool:
    if len(points) < 3:
        return False
    hull = cv2.convexHull(points.astype(np.float32))
    return float(cv2.contourArea(hull)) >= s.min_inlier_spread * target.width * target.height
