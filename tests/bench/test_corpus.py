"""The scale benchmarks' distractor corpus: rendered images, reproducible, resumable, never mixed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from imagecloud.bench.corpus import Pool, render
from imagecloud.vision.features import Features
from tests import imagegen


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for seed in range(6):
        path = folder / f"photo{seed}.jpg"
        cv2.imwrite(str(path), imagegen.poster(500 + seed))
        paths.append(path)
    return paths


def test_render_is_a_function_of_its_seed(photos: list[Path]) -> None:
    shapes = set()
    for seed in range(12):
        image = render(photos, seed)
        assert np.array_equal(image, render(photos, seed))
        assert image.dtype == np.uint8 and image.ndim == 2 and 480 * 0.9 <= max(image.shape) <= 640 * 1.1
        shapes.add(image.shape)
    assert len(shapes) > 6  # sizes, crops and mosaics differ from seed to seed
    assert not np.array_equal(render(photos, 0), render(photos, 1))


def test_pool_resumes_to_the_same_corpus(photos: list[Path], tmp_path: Path) -> None:
    once = Pool(tmp_path / "once")
    once.grow(photos, 8, workers=1)
    resumed = Pool(tmp_path / "resumed")
    resumed.grow(photos, 3, workers=1)
    resumed = Pool(tmp_path / "resumed")  # a later run reopens the folder
    assert len(resumed) == 3
    resumed.grow(photos, 8, workers=1)
    assert len(once) == len(resumed) == 8
    assert [once.blob(i) for i in range(8)] == [resumed.blob(i) for i in range(8)]
    assert all(len(Features.from_bytes(once.blob(i))) > 100 for i in range(8))


def test_pool_refuses_other_sources(photos: list[Path], tmp_path: Path) -> None:
    pool = Pool(tmp_path / "work")
    pool.grow(photos, 2, workers=1)
    with pytest.raises(ValueError, match="other sources"):
        Pool(tmp_path / "work").grow(photos[:4], 4, workers=1)
    with pytest.raises(ValueError, match="no source photos"):
        Pool(tmp_path / "empty").grow([], 4, workers=1)
    # A folder of distractors made before the corpus was rendered (no record of its sources) is refused too.
    (tmp_path / "work" / "pool.json").unlink()
    with pytest.raises(ValueError, match="other sources"):
        Pool(tmp_path / "work").grow(photos, 4, workers=1)
