from __future__ import annotations

import numpy as np
import pytest

from imagecloud.errors import FeatureInsufficient
from imagecloud.service.recognizer import Recognizer
from imagecloud.vision.rating import LEVEL_BANDS, band
from tests import imagegen


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


class TestRating:
    def test_textured_poster_rates_well(self, recognizer: Recognizer) -> None:
        a = recognizer.analyse_target(imagegen.encode(imagegen.poster(1)))
        assert a.level >= 3
        assert 0.05 < a.matchratio <= 1.0
        assert (a.width, a.height, a.format) == (480, 640, "jpeg")

    def test_deterministic(self, recognizer: Recognizer) -> None:
        data = imagegen.encode(imagegen.poster(2), "png")
        assert recognizer.analyse_target(data) == recognizer.analyse_target(data)

    @pytest.mark.parametrize(
        "image",
        [
            pytest.param(imagegen.blank(), id="blank"),
            pytest.param(imagegen.gradient(), id="gradient"),
            pytest.param(imagegen.checkerboard(), id="checkerboard"),
            pytest.param(imagegen.tiled(), id="tiled"),
            pytest.param(imagegen.noise(), id="noise"),
        ],
    )
    def test_insufficient(self, recognizer: Recognizer, image: np.ndarray) -> None:
        with pytest.raises(FeatureInsufficient):
            recognizer.analyse_target(imagegen.encode(image, "png"))


class TestBanding:
    def test_bands_monotone(self) -> None:
        assert [b[0] for b in LEVEL_BANDS] == [5, 4, 3, 2]
        assert band(1.0, 1000) == 5
        assert band(0.0, 1000) == 1
        assert band(1.0, 0) == 1
        ratios = np.linspace(0, 0.5, 26)
        levels = [band(float(r), 1000) for r in ratios]
        assert levels == sorted(levels)
