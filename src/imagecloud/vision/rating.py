"""AddImage rating: how well will this image be recognised?

The rating is a self-test: the image is photographed by the seeded camera simulator the way a phone
photographs a print at arm's length (the print fills 60% of a frame at least 640 px long, whatever the
size of the upload; one view steeply tilted, one dim and soft, one out of focus), and each view's features
are matched back to the image's own features. A target feature counts as re-found in a view when its
nearest neighbour passes the ratio test *and* lands where the known view homography puts it. ``refound``
is the mean number re-found per view, ``matchratio`` the same as a fraction of the image's keypoints. This
punishes exactly what hurts recognition: no texture (nothing detected), repetition (ambiguous neighbours
fail the ratio test), fine detail (gone at photo distance) and small content on a plain page (few features
left once the print is photo-sized).

``level`` bands ``refound`` (that is, ``matchratio`` times the number of keypoints), anchored on what
geometric verification needs to accept a photo, 16 inliers (``VerifySettings.min_inliers``): level 3 is
a typical photo re-finding as many as verification needs, and every level up or down doubles or halves it.

=====  ==========================  ===========================================
level  re-found per view >=        meaning
=====  ==========================  ===========================================
5      64                          four times what verification needs
4      32                          twice
3      16                          as many as verification needs
2      8                           half: found when the photo is good
1      4                           a quarter: rarely found
=====  ==========================  ===========================================

Rejected with ``FeatureInsufficient``: fewer than 60 keypoints, or fewer than 4 features re-found per view
(blank pages, smooth gradients, checkerboards and tilings, random noise, a small logo on a blank page).

Why these views, and why an absolute count: the earlier self-test photographed the print large (70-90% of
a target-sized frame) and banded the re-found *fraction*. It rated detailed covers, whose many fine
features mostly vanish at photo distance, below their own blurred copies, and small logos on blank pages
as well as covers, so the level did not predict recognition (``bench/results/levels/README.md``).

Cost: three views in a frame of the target's working size (``view_size``), with the sensor noise of each view
drawn once per process (``_NOISE``), and only view keypoints that could be re-finds are described and matched
(``_candidates``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from imagecloud.errors import FeatureInsufficient
from imagecloud.vision.features import FeatureExtractor, Features, _empty, _spread
from imagecloud.vision.simulate import SimulatedView, ViewParams, view_homography
from imagecloud.vision.verify import VerifySettings, match_descriptors

# (level, min features re-found per view), best first.
LEVEL_BANDS: tuple[tuple[int, int], ...] = ((5, 64), (4, 32), (3, 16), (2, 8), (1, 4))
MIN_KEYPOINTS = 60
MIN_REFOUND = LEVEL_BANDS[-1][1]

# What each level has meant in practice: the share of simulated phone photos (7 capture conditions: straight,
# tilted 45 and 60 degrees, small, blurred, dark, a quarter covered) in which FindImage found targets of that
# level, measured by ``imagecloud bench levels`` on images the bands were not chosen on
# (bench/results/levels/README.md). The console shows it beside each band.
FOUND_SHARE: dict[int, float] = {5: 1.0, 4: 0.981, 3: 0.946, 2: 0.69, 1: 0.487}

# A photo of the print at arm's length through a phone camera: the print's long side 60% of the frame's,
# sensor noise, JPEG. Each fixed view changes what makes a photo hard.
_ARM_LENGTH = ViewParams(scale=0.6, noise_sigma=3, jpeg_quality=80, background="flat")

# Fixed views so a given image always gets the same rating: a steep tilt, dim light with soft focus, stronger
# blur. Chosen among 16 candidate views (two canvas sizes, flat and cluttered backgrounds) by how well their
# mean re-found count separated the development covers and weakened copies that were always found from those
# that were not.
_VIEWS: tuple[ViewParams, ...] = (
    replace(_ARM_LENGTH, tilt_deg=45, rotation_deg=30, blur_sigma=1.0, brightness=0.9),
    replace(_ARM_LENGTH, tilt_deg=20, rotation_deg=160, blur_sigma=1.8, brightness=0.6),
    replace(_ARM_LENGTH, tilt_deg=40, rotation_deg=-30, blur_sigma=2.5, brightness=1.0),
)
_REFOUND_TOLERANCE = 4.0  # pixels in the view


@dataclass(frozen=True)
class Rating:
    level: int
    matchratio: float  # refound / keypoints
    refound: float  # mean re-found features per view


def band(refound: float) -> int:
    """The level of a target that re-finds ``refound`` features per view (0 when it is rejected)."""
    for level, minimum in LEVEL_BANDS:
        if refound >= minimum:
            return level
    return 0


def rate(gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor) -> Rating:
    """Self-test of ``features`` (extracted from ``gray`` at ``scale``); raises FeatureInsufficient."""
    return rate_and_test(gray, features, scale, extractor)[0]


def rate_and_test(
    gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor
) -> tuple[Rating, SelfTest]:
    """:func:`rate`, and the self-test it was computed from (whose per-keypoint counts AddImage keeps)."""
    n = len(features)
    if n < MIN_KEYPOINTS:  # refused before paying for the self-test
        raise FeatureInsufficient(f"only {n} keypoints")
    test = self_test(gray, features, scale, extractor)
    refound = float(np.mean(test.per_view))
    if refound < MIN_REFOUND:
        raise FeatureInsufficient(f"{refound:.1f} features re-found per simulated photo")
    return Rating(level=band(refound), matchratio=round(min(1.0, refound / n), 4), refound=refound), test


@dataclass(frozen=True, eq=False)
class SelfTest:
    """The self-test per keypoint: what the console draws to show *why* a target got its level."""

    counts: np.ndarray  # int (N,): in how many views each target keypoint was re-found (0..views)
    per_view: list[int]  # re-found matches per view, in the order of the fixed views
    views: int


def self_test(gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor) -> SelfTest:
    """All the fixed views of ``rate``, reported per keypoint instead of averaged."""
    counts = np.zeros(len(features), dtype=np.int64)
    per_view: list[int] = []
    for index in range(len(_VIEWS)):
        t_idx = _refound_in_view(gray, features, scale, extractor, index)
        per_view.append(len(t_idx))
        # Two view features may land on one target keypoint; it was still re-found once in this view.
        counts[np.unique(t_idx)] += 1
    return SelfTest(counts=counts, per_view=per_view, views=len(_VIEWS))


def _refound_in_view(
    gray: np.ndarray, features: Features, scale: float, extractor: FeatureExtractor, index: int
) -> np.ndarray:
    """Indices of target features re-found in fixed view ``index`` (ratio test + right place)."""
    view = render_view(gray, index)
    h, w = view.image.shape[:2]
    expected = _expected(features, scale, view.homography, extractor.settings.scale_factor)
    keypoints = detect_keypoints(extractor, view.image)
    vf = describe_keypoints(extractor, view.image, _candidates(keypoints, expected), w, h)
    v_idx, t_idx = match_descriptors(vf, features, _MATCH)
    if len(v_idx) == 0:
        return np.zeros(0, dtype=np.int64)
    err = np.linalg.norm(expected.points[t_idx] - vf.points[v_idx], axis=1)
    refound: np.ndarray = np.asarray(t_idx, dtype=np.int64)[err <= _REFOUND_TOLERANCE]
    return refound


_MATCH = VerifySettings(ratio=0.8)


# Which view keypoints are worth describing. A keypoint is re-found only where the homography puts a target
# feature (within _REFOUND_TOLERANCE), and on 200 development distractors 99.96% of re-found keypoints also
# had the orientation and pyramid level that target feature should have in the view: within 45 degrees and
# 3 levels (a descriptor is sampled at the keypoint's angle and scale, so a keypoint that disagrees on either
# describes a different patch). Only about 40% of a view's keypoints pass both, which is what makes the
# self-test cheap; a keypoint left out can still, rarely, have been a re-find.
_ANGLE_TOLERANCE = 45.0  # degrees
_OCTAVE_TOLERANCE = 3.0  # pyramid levels


@dataclass(frozen=True, eq=False)
class _Expected:
    """Target features as the view should show them."""

    points: np.ndarray  # float64 (N, 2) view pixels
    angles: np.ndarray  # float64 (N,) degrees
    octaves: np.ndarray  # float64 (N,) pyramid level, fractional


def _expected(features: Features, scale: float, homography: np.ndarray, scale_factor: float) -> _Expected:
    """Where, at what angle and on which pyramid level each target feature lies in a view."""
    pts = (features.points / np.float32(scale)).astype(np.float64)  # working-image pixels
    x, y = pts[:, 0], pts[:, 1]
    (a, b, c), (d, e, f), (g, hh, i) = homography
    z = g * x + hh * y + i
    u = (a * x + b * y + c) / z
    v = (d * x + e * y + f) / z
    # Jacobian of the homography at each point: how a small step around the feature looks in the view.
    j11, j12 = (a - g * u) / z, (b - hh * u) / z
    j21, j22 = (d - g * v) / z, (e - hh * v) / z
    theta = np.radians(features.angles.astype(np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    angles = np.degrees(np.arctan2(j21 * cos + j22 * sin, j11 * cos + j12 * sin))
    local_scale = np.sqrt(np.abs(j11 * j22 - j12 * j21))
    octaves = features.octaves.astype(np.float64) + np.log(np.maximum(local_scale, 1e-9)) / np.log(
        scale_factor
    )
    return _Expected(points=np.stack([u, v], axis=1), angles=angles, octaves=octaves)


def _candidates(keypoints: Sequence[cv2.KeyPoint], expected: _Expected) -> list[cv2.KeyPoint]:
    """The keypoints near a target feature with its expected angle and level, in their original order."""
    if not keypoints or len(expected.points) == 0:
        return []
    xy = np.asarray(cv2.KeyPoint.convert(keypoints), dtype=np.float32).reshape(-1, 2).astype(np.float64)
    k_idx, t_idx = _pairs_within(xy, expected.points, _REFOUND_TOLERANCE + 1e-6)
    if len(k_idx) == 0:
        return []
    angle = np.fromiter((kp.angle for kp in keypoints), np.float64, len(keypoints))
    octave = np.fromiter((kp.octave & 0xFF for kp in keypoints), np.float64, len(keypoints))
    turn = np.abs((angle[k_idx] - expected.angles[t_idx] + 180.0) % 360.0 - 180.0)
    level = np.abs(octave[k_idx] - expected.octaves[t_idx])
    keep = np.unique(k_idx[(turn <= _ANGLE_TOLERANCE) & (level <= _OCTAVE_TOLERANCE)])
    return [keypoints[int(k)] for k in keep]


def _pairs_within(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j) with ``|a[i] - b[j]| <= radius``.

    Both sets are sorted by (row of height ``radius``, x); each point of ``a`` then finds its partners in its
    own and the two neighbouring rows by binary search over an x window. Searching with sorted keys lets
    NumPy narrow each search from the previous one, which is what keeps this cheap.
    """
    x0 = min(float(a[:, 0].min()), float(b[:, 0].min())) - radius
    stride = max(float(a[:, 0].max()), float(b[:, 0].max())) - x0 + 4 * radius  # x windows stay in their row
    key_b = np.floor(b[:, 1] / radius) * stride + (b[:, 0] - x0)
    order_b = np.argsort(key_b, kind="stable")
    sorted_b = key_b[order_b]
    key_a = np.floor(a[:, 1] / radius) * stride + (a[:, 0] - x0)
    order_a = np.argsort(key_a, kind="stable")
    sorted_a = key_a[order_a]
    reach = radius + 1e-6  # the keys are large sums: a pair exactly ``radius`` apart must not round out
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    for shift in (-stride, 0.0, stride):
        start = np.searchsorted(sorted_b, sorted_a + (shift - reach), side="left")
        count = np.searchsorted(sorted_b, sorted_a + (shift + reach), side="right") - start
        total = int(count.sum())
        if total:
            firsts.append(np.repeat(order_a, count))
            seconds.append(order_b[np.repeat(start - np.cumsum(count) + count, count) + np.arange(total)])
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = np.concatenate(firsts), np.concatenate(seconds)
    close = np.hypot(a[i, 0] - b[j, 0], a[i, 1] - b[j, 1]) <= radius
    return i[close], j[close]


# ------------------------------------------------------------------------------------------ feature steps
# FeatureExtractor.extract split in two, so the self-test can describe only the keypoints that matter.
# tests/vision/test_rating.py checks that detect + describe of every keypoint equals extract.


def detect_keypoints(extractor: FeatureExtractor, gray: np.ndarray) -> list[cv2.KeyPoint]:
    """The keypoints ``extractor.extract`` keeps (detected, then spread), before description."""
    s = extractor.settings
    return _spread(extractor.orb().detect(gray, None), gray.shape[1], gray.shape[0], s.keep, s.grid)


def describe_keypoints(
    extractor: FeatureExtractor, gray: np.ndarray, keypoints: Sequence[cv2.KeyPoint], width: int, height: int
) -> Features:
    """Descriptors of ``keypoints`` in ``gray`` (points in its pixels); angles and octaves are left zero."""
    if not keypoints:
        return _empty(width, height)
    if extractor.settings.descriptor == "teblid":
        describer = cv2.xfeatures2d.TEBLID.create(1.0, cv2.xfeatures2d.TEBLID_SIZE_256_BITS)
        described, desc = describer.compute(gray, list(keypoints))
    else:
        described, desc = extractor.orb().compute(gray, list(keypoints))
    if desc is None or len(described) == 0:
        return _empty(width, height)
    n = len(described)
    return Features(
        points=np.asarray(cv2.KeyPoint.convert(described), dtype=np.float32).reshape(-1, 2),
        descriptors=np.ascontiguousarray(desc, dtype=np.uint8),
        angles=np.zeros(n, np.float32),
        octaves=np.zeros(n, np.uint8),
        width=width,
        height=height,
    )


# ------------------------------------------------------------------------------------------ views


VIEW_LONG_SIDE = 640  # the target working size: the views of a target analysed at that size are unchanged


def view_size(width: int, height: int) -> tuple[int, int]:
    """The frame of a self-test view: the image's size, enlarged to VIEW_LONG_SIDE when it is smaller.

    A camera photographs the physical print, not the uploaded pixels: a 320-px upload printed and photographed
    at arm's length fills as many photo pixels as a 2,000-px one. Viewing a small upload in a frame of its own
    size would shrink its print to a thumbnail and rate the file's size instead of its content.
    """
    f = max(1.0, VIEW_LONG_SIDE / max(width, height))
    return max(8, round(width * f)), max(8, round(height * f))


def render_view(gray: np.ndarray, index: int) -> SimulatedView:
    """``simulate_view(gray, _VIEWS[index], seed=index, out_size=view_size(w, h))`` for a grayscale image,
    with cached noise.

    Same operations in the same order, so the pixels are identical (tests/vision/test_rating.py checks it);
    only the noise is read from :data:`_NOISE` instead of being drawn again.
    """
    params = _VIEWS[index]
    h, w = gray.shape[:2]
    size = view_size(w, h)
    rng = np.random.default_rng(index)
    homography = view_homography(w, h, size, params, rng)
    background = np.float32(rng.integers(40, 220))  # simulate's flat background: one draw
    warped = cv2.warpPerspective(
        gray, homography, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), homography, size, flags=cv2.INTER_LINEAR)
    alpha = mask.astype(np.float32) / 255.0
    out = warped.astype(np.float32)
    out *= alpha
    rest = 1 - alpha
    rest *= background
    out += rest
    if params.blur_sigma > 0.05:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), params.blur_sigma), dtype=np.float32)
    out *= params.brightness
    if params.noise_sigma > 0:
        out += _NOISE.take(index, rng, params.noise_sigma, (size[1], size[0]))
    np.clip(out, 0, 255, out=out)
    view = out.astype(np.uint8)
    if params.jpeg_quality > 0:
        ok, enc = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        if ok:
            decoded = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
            if decoded is not None:
                view = np.asarray(decoded, dtype=np.uint8)
    return SimulatedView(image=view, homography=homography)


class _NoiseStreams:
    """Per view: the generator state where its noise starts, and the noise drawn from there.

    Reused only when a view's generator arrives in exactly the recorded state, so the values are the ones
    a fresh draw would give. Grows to the largest view asked for (4 bytes a pixel per view: ~5 MB for
    640-px targets, ~8 MB for 800-px photos). Thread-safe; the arrays are read-only once published.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[int, tuple[Mapping[str, Any], float, np.ndarray]] = {}

    def take(self, index: int, rng: np.random.Generator, sigma: float, shape: tuple[int, int]) -> np.ndarray:
        state = rng.bit_generator.state
        count = shape[0] * shape[1]
        with self._lock:
            cached = self._streams.get(index)
        if cached is not None and cached[0] == state and cached[1] == sigma and len(cached[2]) >= count:
            return cached[2][:count].reshape(shape)
        fresh = np.random.default_rng()
        fresh.bit_generator.state = state
        size = -(-count // 65_536) * 65_536  # whole blocks, so slightly larger views reuse it
        values = fresh.normal(0, sigma, size).astype(np.float32)
        values.flags.writeable = False
        with self._lock:
            self._streams[index] = (state, sigma, values)
        return values[:count].reshape(shape)


_NOISE = _NoiseStreams()
