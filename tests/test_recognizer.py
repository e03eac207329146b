from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from imagecloud.errors import FeatureInsufficient, UnsupportedFormat
from imagecloud.service.recognizer import Match, Recognizer
from tests import imagegen

N_TARGETS = 12


@pytest.fixture(scope="module")
def blobs() -> dict[int, bytes]:
    r = Recognizer()
    images = {i: imagegen.encode(imagegen.poster(100 + i)) for i in range(N_TARGETS)}
    return {i: r.analyse_target(data).features_blob for i, data in images.items()}


@pytest.fixture
def recognizer(blobs: dict[int, bytes]) -> Recognizer:
    r = Recognizer()
    r.load((1, i, b) for i, b in blobs.items())
    return r


def _photo_bytes(target: int, seed: int, tilt_deg: float = 20.0) -> bytes:
    view = imagegen.photo(imagegen.poster(100 + target), seed, tilt_deg=tilt_deg)
    return imagegen.encode(view.image, "jpeg", 88)


def _corner_error(match: Match, homography: np.ndarray, w: int = 480, h: int = 640) -> float:
    box = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ homography.T
    expected = box[:, :2] / box[:, 2:3]
    return float(np.abs(np.array(match.corners) - expected).max())


class TestRecognition:
    @pytest.mark.parametrize("rotation", [0, 90, 180, 270, 37, -123])
    def test_simulated_view_any_rotation(self, recognizer: Recognizer, rotation: float) -> None:
        view = imagegen.photo(imagegen.poster(103), seed=int(rotation) % 1000, rotation_deg=rotation)
        q = recognizer.analyse_query(imagegen.encode(view.image, "jpeg", 88))
        matches = recognizer.search(q, [1])
        assert [m.target_id for m in matches] == [3]
        assert 0.0 < matches[0].score <= 1.0
        assert _corner_error(matches[0], view.homography) < 8.0  # clockwise from the target's top-left

    def test_each_target_found_not_confused(self, recognizer: Recognizer) -> None:
        for t in range(N_TARGETS):
            q = recognizer.analyse_query(_photo_bytes(t, seed=t, tilt_deg=30))
            assert [m.target_id for m in recognizer.search(q, [1], max_results=3)] == [t]

    def test_unrelated_poster_not_matched(self, recognizer: Recognizer) -> None:
        for seed in (900, 901, 902):
            q = recognizer.analyse_query(imagegen.encode(imagegen.photo(imagegen.poster(seed), seed).image))
            assert recognizer.search(q, [1], max_results=5) == []

    def test_other_scope_not_searched(self, recognizer: Recognizer) -> None:
        q = recognizer.analyse_query(_photo_bytes(2, seed=5))
        assert recognizer.search(q, [2]) == []
        assert recognizer.search(q, []) == []

    def test_two_targets_in_one_photo(self, recognizer: Recognizer) -> None:
        left = imagegen.photo(imagegen.poster(104), 1, scale=0.9, out_size=(400, 600)).image
        right = imagegen.photo(imagegen.poster(105), 2, scale=0.9, out_size=(400, 600)).image
        q = recognizer.analyse_query(imagegen.encode(np.hstack([left, right])))
        assert sorted(m.target_id for m in recognizer.search(q, [1], max_results=5)) == [4, 5]
        assert len(recognizer.search(q, [1], max_results=1)) == 1

    def test_query_rating(self, recognizer: Recognizer) -> None:
        q = recognizer.analyse_query(_photo_bytes(1, seed=3))
        assert 1 <= recognizer.rate_query(q) <= 5


class TestSecondPass:
    """A print filling ~20% of the frame is beyond the fast first pass; the second pass finds it."""

    @pytest.mark.parametrize("target", [1, 2, 3])
    def test_small_target_found_only_by_second_pass(self, recognizer: Recognizer, target: int) -> None:
        view = imagegen.photo(imagegen.poster(100 + target), target - 1, scale=0.2, out_size=(1024, 768))
        q = recognizer.analyse_query(imagegen.encode(view.image, "jpeg", 88))
        with_second = recognizer.search(q, [1])
        searcher = recognizer.searcher
        settings = searcher.settings
        searcher.settings = dataclasses.replace(settings, second_pass="off")
        assert recognizer.search(q, [1]) == []
        # "evidence": the first pass saw no target fit at all, so the photo is not looked at again.
        searcher.settings = dataclasses.replace(settings, second_pass="evidence")
        assert recognizer.search(q, [1]) == []
        searcher.settings = settings
        assert [m.target_id for m in with_second] == [target]
        assert _corner_error(with_second[0], view.homography) < 12.0

    def test_similar_never_looks_again(self, recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch) -> None:
        """AddImage's ``similar`` searches the upload itself: a sharp, full-frame print needs no dense second
        look, which is most of what a search that finds nothing costs."""
        looks: list[int] = []
        second_look = recognizer.analyser.second_look

        def counted(query: object) -> object:
            looks.append(1)
            return second_look(query)  # type: ignore[arg-type]

        monkeypatch.setattr(recognizer.analyser, "second_look", counted)
        upload = recognizer.analyse_query(imagegen.encode(imagegen.poster(904)))
        assert recognizer.similar(upload, [1], 5) == [] and looks == []
        assert recognizer.search(upload, [1]) == [] and looks == [1]  # a photo of nothing is looked at again
        same = recognizer.analyse_query(imagegen.encode(imagegen.poster(102)))
        assert [m.target_id for m in recognizer.similar(same, [1], 5)] == [2]

    def test_unrelated_small_poster_not_matched(self, recognizer: Recognizer) -> None:
        view = imagegen.photo(imagegen.poster(903), 7, scale=0.2, out_size=(1024, 768))
        q = recognizer.analyse_query(imagegen.encode(view.image, "jpeg", 88))
        assert recognizer.search(q, [1], max_results=5) == []

    def test_other_scope_not_searched_by_second_pass(self, recognizer: Recognizer) -> None:
        view = imagegen.photo(imagegen.poster(102), 1, scale=0.2, out_size=(1024, 768))
        q = recognizer.analyse_query(imagegen.encode(view.image, "jpeg", 88))
        assert recognizer.search(q, [2]) == []


class TestQueryAnalysis:
    def test_blank_photo(self, recognizer: Recognizer) -> None:
        with pytest.raises(FeatureInsufficient):
            recognizer.analyse_query(imagegen.encode(imagegen.blank()))

    def test_not_an_image(self, recognizer: Recognizer) -> None:
        with pytest.raises(UnsupportedFormat):
            recognizer.analyse_query(b"%PDF-1.4 hello")

    def test_size_reported_in_original_pixels(self, recognizer: Recognizer) -> None:
        q = recognizer.analyse_query(
            imagegen.encode(imagegen.photo(imagegen.poster(1), 1, out_size=(1600, 1200)).image)
        )
        assert (q.width, q.height) == (1600, 1200)


class TestUpkeep:
    def test_remove_then_never_found(self, recognizer: Recognizer, blobs: dict[int, bytes]) -> None:
        q = recognizer.analyse_query(_photo_bytes(6, seed=11))
        assert [m.target_id for m in recognizer.search(q, [1])] == [6]
        recognizer.remove(1, 6)
        assert recognizer.search(q, [1]) == []
        assert len(recognizer) == N_TARGETS - 1
        recognizer.add(1, 6, blobs[6])  # re-adding the same id works and is immediately searchable
        assert [m.target_id for m in recognizer.search(q, [1])] == [6]

    def test_replace_image_of_same_id(self, recognizer: Recognizer, blobs: dict[int, bytes]) -> None:
        recognizer.add(1, 7, blobs[8])  # id 7 now shows poster 8
        q7 = recognizer.analyse_query(_photo_bytes(7, seed=2))
        assert 7 not in [m.target_id for m in recognizer.search(q7, [1], max_results=5)]
        q8 = recognizer.analyse_query(_photo_bytes(8, seed=2))
        # Two targets showing one image fit the same place in the photo: ambiguous, so no answer.
        assert recognizer.search(q8, [1], max_results=5) == []
        assert len(recognizer) == N_TARGETS
        recognizer.remove(1, 8)
        assert [m.target_id for m in recognizer.search(q8, [1], max_results=5)] == [7]
        recognizer.add(1, 8, blobs[8])

    def test_drop_scope(self, recognizer: Recognizer, blobs: dict[int, bytes]) -> None:
        recognizer.add(2, 0, blobs[0])
        recognizer.drop_scope(1)
        assert len(recognizer) == 1
        q = recognizer.analyse_query(_photo_bytes(0, seed=4))
        assert [(m.scope, m.target_id) for m in recognizer.search(q, [1, 2])] == [(2, 0)]

    def test_concurrent_search_add_remove(self, blobs: dict[int, bytes]) -> None:
        r = Recognizer()
        r.load((1, i, blobs[i]) for i in range(6))
        q_stable = r.analyse_query(_photo_bytes(1, seed=21))
        q_churn = r.analyse_query(_photo_bytes(9, seed=22))
        errors: list[BaseException] = []
        stop = threading.Event()

        def searcher() -> None:
            try:
                while not stop.is_set():
                    assert [m.target_id for m in r.search(q_stable, [1])] == [1]
                    assert [m.target_id for m in r.search(q_churn, [1])] in ([], [9])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(15):
                r.add(1, 9, blobs[9])
                assert [m.target_id for m in r.search(q_churn, [1])] == [9]
                r.remove(1, 9)
                assert r.search(q_churn, [1]) == []
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors
