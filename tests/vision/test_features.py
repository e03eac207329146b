from __future__ import annotations

import cv2
import numpy as np
import pytest

from imagecloud.vision.features import FeatureExtractor, Features
from tests.imagegen import poster


def _extract(gray: np.ndarray, scale: float = 1.0) -> Features:
    h, w = gray.shape
    return FeatureExtractor().extract(gray, scale, round(w * scale), round(h * scale))


class TestExtraction:
    def test_spread_over_image(self) -> None:
        gray = cv2.cvtColor(poster(1), cv2.COLOR_BGR2GRAY)
        f = _extract(gray)
        assert 500 <= len(f) <= 1000
        assert f.descriptors.shape == (len(f), 32) and f.descriptors.dtype == np.uint8
        # Every quadrant gets a fair share of keypoints.
        h, w = gray.shape
        quadrant = (f.points[:, 0] > w / 2).astype(int) + 2 * (f.points[:, 1] > h / 2)
        assert np.bincount(quadrant, minlength=4).min() > len(f) / 10

    def test_every_prefix_is_spread(self) -> None:
        """The first descriptors vote alone in the first search round, so they must cover the image too."""
        gray = cv2.cvtColor(poster(1), cv2.COLOR_BGR2GRAY)
        f = _extract(gray)
        head = f.points[: len(f) // 4]
        h, w = gray.shape
        quadrant = (head[:, 0] > w / 2).astype(int) + 2 * (head[:, 1] > h / 2)
        assert np.bincount(quadrant, minlength=4).min() > len(head) / 8

    def test_points_in_original_coordinates(self) -> None:
        gray = cv2.cvtColor(poster(2), cv2.COLOR_BGR2GRAY)
        f = _extract(gray, scale=2.5)
        assert f.points[:, 0].max() > gray.shape[1] and f.points[:, 0].max() <= f.width

    def test_blank_has_no_features(self) -> None:
        assert len(_extract(np.full((300, 300), 128, np.uint8))) == 0


class TestSerialisation:
    def test_round_trip(self) -> None:
        f = _extract(cv2.cvtColor(poster(3), cv2.COLOR_BGR2GRAY), scale=3.0)
        blob = f.to_bytes()
        assert len(blob) <= 40_000
        g = Features.from_bytes(blob)
        assert (g.width, g.height) == (f.width, f.height)
        assert np.array_equal(g.descriptors, f.descriptors)
        assert np.array_equal(g.octaves, f.octaves)
        assert np.abs(g.points - f.points).max() < 0.05
        angle_err = np.abs((g.angles - f.angles + 180) % 360 - 180)
        assert angle_err.max() < 1.0

    @pytest.mark.parametrize("blob", [b"", b"XYZ" + bytes(20), b"ICF\x09" + bytes(12)])
    def test_rejects_garbage(self, blob: bytes) -> None:
        with pytest.raises(ValueError):
            Features.from_bytes(blob)

    def test_rejects_truncated(self) -> None:
        blob = _extract(cv2.cvtColor(poster(4), cv2.COLOR_BGR2GRAY)).to_bytes()
        with pytest.raises(ValueError):
            Features.from_bytes(blob[:-1])

    def test_repeatability_round_trip(self) -> None:
        f = _extract(cv2.cvtColor(poster(5), cv2.COLOR_BGR2GRAY))
        counts = np.arange(len(f)) % 4
        blob = f.with_repeatability(counts).to_bytes()
        assert blob[3] == 2 and len(blob) == len(f.to_bytes()) + len(f)  # one byte more per keypoint
        g = Features.from_bytes(blob)
        assert g.repeatability is not None and g.repeatability.tolist() == counts.tolist()
        assert np.array_equal(g.descriptors, f.descriptors)
        assert np.array_equal(g.octaves, f.octaves)
        with pytest.raises(ValueError):
            Features.from_bytes(blob[:-1])
        with pytest.raises(ValueError):
            f.with_repeatability(counts[:-1])

    def test_features_without_repeatability_keep_the_first_format(self) -> None:
        """Blobs stored before the counts existed read back as they were, and write back byte for byte."""
        blob = _extract(cv2.cvtColor(poster(6), cv2.COLOR_BGR2GRAY)).to_bytes()
        assert blob[3] == 1
        g = Features.from_bytes(blob)
        assert g.repeatability is None
        assert g.to_bytes() == blob
