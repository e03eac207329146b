from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from imagecloud.bench.dataset import load_dataset
from imagecloud.bench.synthetic import CONDITIONS, Condition, occlude, synthesize
from tests import imagegen


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed in range(3):
        cv2.imwrite(str(folder / f"poster{seed}.png"), imagegen.poster(seed))
    (folder / "notes.txt").write_text("not an image")
    return folder


class TestOcclude:
    @pytest.mark.parametrize("fraction", [0.25, 0.5])
    def test_covers_the_requested_fraction(self, fraction: float) -> None:
        image = np.full((200, 300, 3), 7, np.uint8)
        covered = occlude(image, fraction, np.random.default_rng(1))
        changed = np.any(covered != image, axis=2).mean()
        assert changed == pytest.approx(fraction, abs=0.01)

    def test_zero_leaves_the_image_alone(self) -> None:
        image = imagegen.poster(1)
        assert occlude(image, 0.0, np.random.default_rng(0)) is image


class TestSynthesize:
    def test_writes_a_dataset_with_one_photo_per_condition(self, images: Path, tmp_path: Path) -> None:
        conditions = CONDITIONS[:3]
        written = synthesize(images, tmp_path / "set", conditions=conditions)
        assert written == 3 * len(conditions)
        dataset = load_dataset(tmp_path / "set")
        assert sorted(dataset.targets) == ["poster0", "poster1", "poster2"]
        assert len(dataset.queries) == written
        assert {q.conditions["condition"] for q in dataset.queries} == {c.name for c in conditions}
        for query in dataset.queries:
            photo = cv2.imread(str(query.path))
            assert photo is not None and photo.shape[:2] == (768, 1024)

    def test_same_seed_same_photos(self, images: Path, tmp_path: Path) -> None:
        conditions = (CONDITIONS[0],)
        synthesize(images, tmp_path / "a", conditions=conditions, max_images=1, seed=3)
        synthesize(images, tmp_path / "b", conditions=conditions, max_images=1, seed=3)
        synthesize(images, tmp_path / "c", conditions=conditions, max_images=1, seed=4)
        name = "queries/poster0--baseline.jpg"
        a, b, c = ((tmp_path / x / name).read_bytes() for x in "abc")
        assert a == b
        assert a != c

    def test_photo_background_uses_the_real_photo(self, images: Path, tmp_path: Path) -> None:
        backgrounds = tmp_path / "bg"
        backgrounds.mkdir()
        cv2.imwrite(str(backgrounds / "red.png"), np.full((600, 800, 3), (0, 0, 255), np.uint8))
        condition = Condition("photo", CONDITIONS[0].params, photo_background=True)
        synthesize(images, tmp_path / "set", conditions=(condition,), backgrounds=backgrounds, max_images=1)
        photo = cv2.imread(str(tmp_path / "set/queries/poster0--photo.jpg"))
        assert photo is not None
        corner = photo[:20, :20].reshape(-1, 3).mean(axis=0)
        assert corner[2] > 200 and corner[0] < 60  # red, as the background photo

    def test_queries_csv_names_targets(self, images: Path, tmp_path: Path) -> None:
        synthesize(images, tmp_path / "set", conditions=(CONDITIONS[0],))
        with (tmp_path / "set/queries.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert {row["target"] for row in rows} == {"poster0", "poster1", "poster2"}

    def test_empty_folder_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError):
            synthesize(tmp_path, tmp_path / "set")


def test_backgrounds_and_distractors_from_one_folder_stay_apart(images: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(6):
        cv2.imwrite(str(photos / f"p{n}.png"), np.full((60, 80, 3), n * 40, np.uint8))
    condition = Condition("photo", CONDITIONS[0].params, photo_background=True)
    synthesize(images, tmp_path / "set", conditions=(condition,), backgrounds=photos, distractors=photos)
    enrolled = sorted(p.name for p in (tmp_path / "set/distractors").iterdir())
    assert enrolled == ["p0.png", "p2.png", "p4.png"]
    # Every background is one of the odd-numbered photos: a flat grey of 40, 120 or 200.
    for query in (tmp_path / "set/queries").iterdir():
        photo = cv2.imread(str(query))
        assert photo is not None
        grey = float(photo[:10, :10].mean())  # sensor noise and JPEG move it a little
        assert min(abs(grey - level) for level in (40, 120, 200)) < 8, grey
