from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from imagecloud.errors import FeatureInsufficient
from imagecloud.service.recognizer import Recognizer
from imagecloud.vision import rating
from imagecloud.vision.analysis import Analyser
from imagecloud.vision.decode import DecodedImage, decode_image
from imagecloud.vision.features import FeatureExtractor, Features, FeatureSettings
from imagecloud.vision.rating import LEVEL_BANDS, band
from imagecloud.vision.simulate import simulate_view
from imagecloud.vision.verify import VerifySettings, match_descriptors
from tests import imagegen


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


class TestRating:
    def test_textured_poster_rates_well(self, recognizer: Recognizer) -> None:
        a = recognizer.analyse_target(imagegen.encode(imagegen.poster(1)))
        assert a.level >= 3
        assert 0.0 < a.matchratio <= 1.0
        assert (a.width, a.height, a.format) == (480, 640, "jpeg")

    def test_a_small_upload_is_photographed_at_the_size_of_any_print(self, recognizer: Recognizer) -> None:
        # A camera sees the printed target, not its file: a 240 x 320 upload must not be rated as a thumbnail.
        large = imagegen.poster(5, 480, 640)
        small = cv2.resize(large, (240, 320), interpolation=cv2.INTER_AREA)
        assert rating.view_size(240, 320) == (480, 640) and rating.view_size(900, 1200) == (900, 1200)
        rated_small = recognizer.analyse_target(imagegen.encode(small))
        assert rated_small.level >= recognizer.analyse_target(imagegen.encode(large)).level

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
    def test_every_level_doubles_the_one_below(self) -> None:
        assert [level for level, _ in LEVEL_BANDS] == [5, 4, 3, 2, 1]
        minimums = [minimum for _, minimum in LEVEL_BANDS]
        assert all(a == 2 * b for a, b in itertools.pairwise(minimums))
        assert minimums[-1] == rating.MIN_REFOUND

    def test_level_3_is_what_verification_needs(self) -> None:
        assert dict(LEVEL_BANDS)[3] == VerifySettings().min_inliers

    @pytest.mark.parametrize(
        ("refound", "level"),
        [(500.0, 5), (64.0, 5), (63.9, 4), (32.0, 4), (16.0, 3), (8.0, 2), (4.0, 1), (3.9, 0)],
    )
    def test_edges(self, refound: float, level: int) -> None:
        assert band(refound) == level

    def test_found_share_known_for_every_level_and_rising(self) -> None:
        shares = [rating.FOUND_SHARE[level] for level, _ in reversed(LEVEL_BANDS)]
        assert all(0.0 <= s <= 1.0 for s in shares)
        assert shares == sorted(shares)


def _gray(seed: int, width: int = 480, height: int = 640) -> np.ndarray:
    return np.asarray(cv2.cvtColor(imagegen.poster(seed, width, height), cv2.COLOR_BGR2GRAY))


def _analysed(seed: int) -> tuple[DecodedImage, Features, FeatureExtractor]:
    """A poster as AddImage sees it: decoded to the working size, with its stored features."""
    extractor = FeatureExtractor()
    img = decode_image(imagegen.encode(imagegen.poster(seed, 960, 720)), max_pixels=10**8, working_size=640)
    return img, extractor.extract(img.gray, img.scale, img.width, img.height), extractor


class TestViews:
    @pytest.mark.parametrize("size", [(480, 640), (900, 700), (333, 500), (240, 320)])
    def test_views_are_simulate_view_pixel_for_pixel(self, size: tuple[int, int]) -> None:
        """Sizes in this order grow the cached noise, then reuse it for a smaller view."""
        gray = _gray(3, *size)
        for index, params in enumerate(rating._VIEWS):
            reference = simulate_view(gray, params, seed=index, out_size=rating.view_size(*size))
            for _ in range(2):  # the second render reads the noise from the cache
                view = rating.render_view(gray, index)
                assert np.array_equal(view.image, reference.image)
                assert np.array_equal(view.homography, reference.homography)

    def test_concurrent_renders_of_different_sizes(self) -> None:
        grays = [_gray(seed, 300 + 90 * seed, 640 - 40 * seed) for seed in range(6)]
        with ThreadPoolExecutor(4) as pool:
            views = list(pool.map(lambda g: [rating.render_view(g, i).image for i in range(3)], grays * 3))
        for gray, rendered in zip(grays * 3, views, strict=True):
            for index, params in enumerate(rating._VIEWS):
                size = rating.view_size(gray.shape[1], gray.shape[0])
                assert np.array_equal(rendered[index], simulate_view(gray, params, index, size).image)

    def test_noise_reused_only_from_the_same_generator_state(self) -> None:
        streams = rating._NoiseStreams()  # not the shared one: this test replaces entries on purpose

        def fresh(seed: int, sigma: float, shape: tuple[int, int]) -> np.ndarray:
            return np.random.default_rng(seed).normal(0, sigma, shape).astype(np.float32)

        for seed, sigma, shape in [(0, 3.0, (20, 30)), (0, 3.0, (5, 7)), (1, 3.0, (5, 7)), (1, 4.0, (5, 7))]:
            taken = streams.take(0, np.random.default_rng(seed), sigma, shape)
            assert np.array_equal(taken, fresh(seed, sigma, shape))


class TestFeatureSteps:
    @pytest.mark.parametrize("descriptor", ["teblid", "orb"])
    def test_detect_then_describe_is_extract(self, descriptor: str) -> None:
        extractor = FeatureExtractor(FeatureSettings(descriptor=descriptor))
        gray = _gray(4)
        h, w = gray.shape
        whole = extractor.extract(gray, 1.0, w, h)
        parts = rating.describe_keypoints(extractor, gray, rating.detect_keypoints(extractor, gray), w, h)
        assert len(whole) > 500
        assert np.array_equal(parts.points, whole.points)
        assert np.array_equal(parts.descriptors, whole.descriptors)

    def test_pairs_within_finds_exactly_the_close_pairs(self) -> None:
        rng = np.random.default_rng(7)
        for trial in range(200):
            a = rng.uniform(-5, 60, (int(rng.integers(1, 60)), 2))
            b = rng.uniform(-5, 60, (int(rng.integers(1, 60)), 2))
            if trial % 2:
                b[::2] = np.round(b[::2] / 4) * 4  # points on the search grid's row and cell borders
                m = min(len(a[::3]), len(b))
                a[: 3 * m : 3] = b[:m] + np.array([4.0, 0.0])  # pairs exactly the radius apart
            i, j = rating._pairs_within(a, b, 4.0)
            distance = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
            assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(
                zip(*np.nonzero(distance <= 4.0), strict=True)
            )

    def test_candidates_keep_the_refound_features(self) -> None:
        """Describing only the candidates finds (almost) what describing every keypoint finds."""
        reference, lost, extra, candidates, keypoints_seen = 0, 0, 0, 0, 0
        for seed in range(5, 13):  # a photo-sized print re-finds a few dozen features per poster
            img, features, extractor = _analysed(seed)
            h, w = img.gray.shape
            for index in range(len(rating._VIEWS)):
                view = rating.render_view(img.gray, index)
                factor = extractor.settings.scale_factor
                expected = rating._expected(features, img.scale, view.homography, factor)
                keypoints = rating.detect_keypoints(extractor, view.image)
                every = rating.describe_keypoints(extractor, view.image, keypoints, w, h)
                v_idx, t_idx = match_descriptors(every, features, rating._MATCH)
                placed = np.linalg.norm(expected.points[t_idx] - every.points[v_idx], axis=1) <= 4.0
                wanted = set(t_idx[placed].tolist())
                found = set(rating._refound_in_view(img.gray, features, img.scale, extractor, index).tolist())
                reference += len(wanted)
                lost += len(wanted - found)
                extra += len(found - wanted)
                candidates += len(rating._candidates(keypoints, expected))
                keypoints_seen += len(keypoints)
        assert reference > 200
        assert lost <= 0.02 * reference and extra <= 0.02 * reference
        assert candidates < 0.7 * keypoints_seen  # the point of the filter: most keypoints are not described


class TestSelfTest:
    def test_self_test_runs_every_view(self) -> None:
        img, features, extractor = _analysed(9)
        test = rating.self_test(img.gray, features, img.scale, extractor)
        per_view = [
            len(rating._refound_in_view(img.gray, features, img.scale, extractor, i))
            for i in range(len(rating._VIEWS))
        ]
        assert test.views == 3 and test.per_view == per_view
        assert int(test.counts.sum()) == sum(per_view) and int(test.counts.max()) <= 3

    def test_rate_is_the_mean_of_the_self_test_views(self) -> None:
        img, features, extractor = _analysed(9)
        test = rating.self_test(img.gray, features, img.scale, extractor)
        result = rating.rate(img.gray, features, img.scale, extractor)
        assert result.refound == pytest.approx(float(np.mean(test.per_view)))
        assert result.matchratio == round(result.refound / len(features), 4)
        assert result.level == band(result.refound)


def test_a_target_analysis_stores_its_self_test_and_rating() -> None:
    """AddImage's rating comes from the same self-test whose per-keypoint counts are stored."""
    data = imagegen.encode(imagegen.poster(41))
    analyser = Analyser()
    analysis = analyser.analyse_target(data)
    stored = Features.from_bytes(analysis.features_blob)
    img = decode_image(data, max_pixels=50_000_000, working_size=analyser.settings.target_working_size)
    extractor = FeatureExtractor(analyser.settings.features)
    test = rating.self_test(img.gray, stored, img.scale, extractor)
    assert stored.repeatability is not None and stored.repeatability.tolist() == test.counts.tolist()
    rated = rating.rate(img.gray, stored, img.scale, extractor)
    assert (analysis.level, analysis.matchratio) == (rated.level, rated.matchratio)
