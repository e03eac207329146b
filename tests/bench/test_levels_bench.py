"""``bench levels`` end to end on a tiny generated set: grading, rounds, the per-level table, re-rating."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from imagecloud.bench import levels
from imagecloud.bench.synthetic import CONDITIONS
from tests import imagegen


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed in range(3):
        cv2.imwrite(str(folder / f"poster{seed}.png"), imagegen.poster(seed))
    return folder


class TestGrade:
    def test_one_original_and_weakened_copies_per_image_in_separate_rounds(
        self, images: Path, tmp_path: Path
    ) -> None:
        made = levels.grade(images, tmp_path, variants=2)
        assert len(made) == 3 * 3
        assert [t.kind for t in made if t.round == 0] == ["original"] * 3
        assert {t.round for t in made} == {0, 1, 2}
        # Every weakening is used in turn, and each image's versions share its half.
        assert [t.kind for t in made if t.round > 0] == [name for name, _ in levels.WEAKENINGS[:6]]
        assert {t.half for t in made if t.source == "poster0"} == {"fit"}
        assert {t.half for t in made if t.source == "poster1"} == {"check"}
        for t in made:
            picture = cv2.imread(str(tmp_path / f"round-{t.round}" / f"{t.identifier}.jpg"))
            assert picture is not None and max(picture.shape[:2]) == levels.LONG_SIDE

    def test_skip_leaves_out_the_first_images(self, images: Path, tmp_path: Path) -> None:
        made = levels.grade(images, tmp_path, variants=1, skip_images=1, max_images=1)
        assert {t.source for t in made} == {"poster1"}

    def test_weakenings_change_the_image_and_are_seeded(self) -> None:
        image = cv2.resize(imagegen.poster(4), (480, 640))
        for name, weaken in levels.WEAKENINGS:
            a = weaken(image, np.random.default_rng(1))
            b = weaken(image, np.random.default_rng(1))
            assert a.shape == image.shape and a.dtype == np.uint8, name
            assert np.array_equal(a, b), name
            assert not np.array_equal(a, image), name


def test_found_share_per_level_and_rerating(images: Path, tmp_path: Path) -> None:
    baseline = next(c for c in CONDITIONS if c.name == "baseline")
    scale = next(c for c in CONDITIONS if c.name == "scale-30")
    work, out = tmp_path / "work", tmp_path / "out"
    report = levels.run(images, work, out, variants=1, conditions=(baseline, scale))
    rows = report["targets"]
    assert len(rows) == 6 and report["sources"] == 3
    accepted = [r for r in rows if r["level"] is not None]
    assert all(r["photos"] == 2 and 0 <= r["found"] <= 2 for r in accepted)
    assert all(r["photos"] == 0 for r in rows if r["level"] is None)
    # Every original poster is enrolled and found in both photos: nothing else in its round resembles it.
    assert all(r["found"] == 2 for r in rows if r["kind"] == "original")
    table = report["table"]["all"]
    assert [row["level"] for row in table] == [5, 4, 3, 2, 1, "rejected"]
    assert sum(row["targets"] for row in table) == 6
    # Posters 0 and 2 with their copies are the fit half, poster 1 with its copy the check half.
    assert [sum(row["targets"] for row in report["table"][half]) for half in levels.HALVES] == [4, 2]
    assert report["wrong"] == 0
    assert json.loads((out / "report.json").read_text())["table"] == report["table"]
    assert "| level | targets | photos | found |" in (out / "report.md").read_text()
    # Re-rating keeps the photos and what was found: the same table again, without searching.
    again = levels.run(images, work, tmp_path / "again", rerate=True)
    assert again["table"] == report["table"]
    assert again["conditions"] == ["baseline", "scale-30"]
