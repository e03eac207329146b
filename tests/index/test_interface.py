"""Every index implementation behaves alike through the Index interface, keyed by target id (and so does
the tiered index that routes scopes to them, apart from its two-step start-up).

Real parts: features of generated posters, each searched with the descriptors of a second view of it, in
the exact index, the subset index and the visual-word index (with a small vocabulary trained on the
posters).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from imagecloud.index import (
    ExactIndex,
    Index,
    SubsetIndex,
    TieredIndex,
    TierSettings,
    VisualWordIndex,
    VotingIndex,
)
from imagecloud.index.words import WordSettings
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features
from tests.imagegen import encode, poster

Searchable = ExactIndex | SubsetIndex | VisualWordIndex | TieredIndex
WORDS = WordSettings(coarse=64, fine=128, train_per_word=1, merge_fanout=4)
POSTERS = 6


def _features(image: np.ndarray) -> Features:
    img = decode_image(encode(image), max_pixels=50_000_000, working_size=640)
    return FeatureExtractor().extract(img.gray, img.scale, img.width, img.height)


def _second_view(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 0.85), (w, h))


@pytest.fixture(scope="module")
def blobs() -> dict[int, bytes]:
    return {i: _features(poster(500 + i)).to_bytes() for i in range(POSTERS)}


@pytest.fixture(scope="module")
def views() -> dict[int, Features]:
    return {i: _features(_second_view(poster(500 + i))) for i in range(POSTERS)}


def _exact(folder: Path | None, blobs: dict[int, bytes]) -> Searchable:
    return ExactIndex(folder=folder)


def _subset(folder: Path | None, blobs: dict[int, bytes]) -> Searchable:
    return SubsetIndex(folder=folder)


def _words(folder: Path | None, blobs: dict[int, bytes]) -> VisualWordIndex:
    index = VisualWordIndex(WORDS, folder)
    index.train(np.concatenate([Features.from_bytes(b).descriptors for b in blobs.values()]))
    return index


def _tiered(folder: Path | None, blobs: dict[int, bytes]) -> Searchable:
    return TieredIndex(TierSettings(words=WORDS), folder)


MAKERS: dict[str, Callable[[Path | None, dict[int, bytes]], Searchable]] = {
    "exact": _exact,
    "subset": _subset,
    "words": _words,
    "tiered": _tiered,
}


@pytest.fixture(params=sorted(MAKERS))
def make(request: pytest.FixtureRequest) -> Callable[[Path | None, dict[int, bytes]], Searchable]:
    return MAKERS[request.param]


def _best(index: Searchable, query: Features, scopes: list[int]) -> tuple[int, int] | None:
    found = index.search(query, scopes, 3)
    return (found[0].target, found[0].scope) if found else None


def test_implementations_are_indexes() -> None:
    assert isinstance(ExactIndex(), VotingIndex)
    assert isinstance(SubsetIndex(), VotingIndex)
    assert isinstance(VisualWordIndex(), Index)
    assert not isinstance(VisualWordIndex(), VotingIndex)


def test_search_add_remove_replace_by_target_id(make, blobs, views) -> None:
    index = make(None, blobs)
    for t in range(POSTERS):
        index.add(1 + t % 2, 100 + t, blobs[t])
    index.wait_idle()
    assert len(index) == POSTERS
    for t in range(POSTERS):
        assert _best(index, views[t], [1, 2]) == (100 + t, 1 + t % 2)
        assert index.holds(100 + t)
    assert all(c.scope == 1 for c in index.search(views[1], [1], 10))  # other scopes are not searched
    index.remove(100)
    assert not index.holds(100)
    assert 100 not in [c.target for c in index.search(views[0], [1, 2], 10)]
    index.add(1, 102, blobs[0])  # the same id again, another image: it now answers for that image
    index.wait_idle()
    assert _best(index, views[0], [1]) == (102, 1)
    index.drop_scope(2)
    assert index.search(views[1], [2], 10) == []


def test_features_only_where_kept(blobs) -> None:
    exact = ExactIndex()
    exact.add(1, 7, blobs[0])
    assert exact.features([7, 8])[7].to_bytes() == blobs[0]
    for index in (_words(None, blobs), SubsetIndex()):
        index.add(1, 7, blobs[0])
        assert index.features([7]) == {}  # read from storage by whoever verifies


@pytest.mark.parametrize("make", [_exact, _subset, _words])
def test_saved_and_restored_from_a_folder(make, blobs, views, tmp_path: Path) -> None:
    index = make(tmp_path, blobs)
    items = [(1, 100 + t, blobs[t]) for t in range(POSTERS)]
    index.load(items)
    index.wait_idle()
    index.save()
    # Made afresh, as at a restart: a word index finds its vocabulary in the folder.
    again = (
        type(index)(folder=tmp_path) if isinstance(index, ExactIndex) else VisualWordIndex(WORDS, tmp_path)
    )
    live = np.array([100 + t for t in range(POSTERS) if t != 2], np.int64)  # 102 was removed meanwhile
    needed = set(again.restore(live).tolist())
    again.load(item for item in items if item[1] in needed)
    again.wait_idle()
    assert _best(again, views[4], [1]) == (104, 1)
    assert 102 not in [c.target for c in again.search(views[2], [1], 10)]
