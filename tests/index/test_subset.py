"""The subset index keeps each target's most repeatable descriptors, and large scopes move into it.

Real parts: features of generated posters with the rating's real self-test counts, FAISS indexes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from imagecloud.index import SubsetIndex, SubsetSettings, TieredIndex, TierSettings
from imagecloud.index.binary import BinaryVotingIndex, IndexSettings
from imagecloud.index.quantizer import two_level_centroids
from imagecloud.index.sealed import fingerprint
from imagecloud.index.subset import most_repeatable
from imagecloud.vision.analysis import Analyser
from imagecloud.vision.features import Features
from tests.imagegen import encode, photo, poster

POSTERS = 8


def _features(n: int, counts: list[int] | None) -> Features:
    rng = np.random.default_rng(n)
    return Features(
        points=rng.uniform(0, 100, (n, 2)).astype(np.float32),
        descriptors=rng.integers(0, 256, (n, 32), dtype=np.uint8),
        angles=np.zeros(n, np.float32),
        octaves=np.zeros(n, np.uint8),
        width=100,
        height=100,
        repeatability=None if counts is None else np.asarray(counts, np.uint8),
    )


def test_most_repeatable_takes_the_most_refound_in_stored_order() -> None:
    feats = _features(8, [0, 3, 1, 3, 0, 2, 1, 0])
    assert most_repeatable(feats, 3).tolist() == [1, 3, 5]
    # Ties go to the earlier keypoint (the spread order), and the result keeps the stored order.
    assert most_repeatable(feats, 5).tolist() == [1, 2, 3, 5, 6]
    assert most_repeatable(feats, 20).tolist() == list(range(8))


def test_without_counts_the_spread_prefix_is_kept() -> None:
    assert most_repeatable(_features(8, None), 3).tolist() == [0, 1, 2]


@pytest.fixture(scope="module")
def blobs() -> dict[int, bytes]:
    analyser = Analyser()
    return {i: analyser.analyse_target(encode(poster(700 + i))).features_blob for i in range(POSTERS)}


@pytest.fixture(scope="module")
def views() -> dict[int, Features]:
    analyser = Analyser()
    out = {}
    for i in range(POSTERS):
        shot = photo(poster(700 + i), seed=i, tilt_deg=20.0)
        out[i] = analyser.analyse_query(encode(shot.image, "jpeg", 90)).features
    return out


def test_targets_carry_their_self_test_counts(blobs: dict[int, bytes]) -> None:
    feats = Features.from_bytes(blobs[0])
    assert feats.repeatability is not None and len(feats.repeatability) == len(feats)
    assert 0 < int((feats.repeatability > 0).sum()) < len(feats)
    assert int(feats.repeatability.max()) <= 3  # the rating's three views


def test_indexes_only_the_kept_descriptors_and_finds_photos(blobs, views) -> None:
    index = SubsetIndex(SubsetSettings(keep=150))
    for t, blob in blobs.items():
        index.add(1, 100 + t, blob)
    exact_rows, _, entries = index.voting.segment_rows(1)
    assert (exact_rows, entries) == (150 * POSTERS, POSTERS)
    assert index.features([100]) == {}  # verification reads them from storage
    for t in range(POSTERS):
        assert index.search(views[t], [1], 3)[0].target == 100 + t


def test_repeatable_descriptors_outvote_the_spread_prefix(blobs, views) -> None:
    """The same budget of rows: the self-test's choice draws more votes from real photos of the poster."""
    chosen, prefix = SubsetIndex(SubsetSettings(keep=100)), SubsetIndex(SubsetSettings(keep=100))
    for t, blob in blobs.items():
        chosen.add(1, 100 + t, blob)
        feats = Features.from_bytes(blob)
        bare = Features(
            feats.points, feats.descriptors, feats.angles, feats.octaves, feats.width, feats.height
        )
        prefix.add(1, 100 + t, bare.to_bytes())
    votes_chosen = sum(chosen.search(views[t], [1], 1)[0].votes for t in range(POSTERS))
    votes_prefix = sum(prefix.search(views[t], [1], 1)[0].votes for t in range(POSTERS))
    assert votes_chosen > 1.3 * votes_prefix


def test_two_level_centroids_partition_like_kmeans() -> None:
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (64, 32), dtype=np.uint8)
    flips = np.packbits(rng.random((20_000, 256)) < 0.05, axis=1)
    sample = centres[rng.integers(0, 64, 20_000)] ^ flips
    centroids = two_level_centroids(sample, 256)
    assert 64 <= len(centroids) <= 256
    # Every planted cluster centre lies near some centroid (5% of bits flipped: ~13 of 256 bits apart).
    dist = np.unpackbits(centres[:, None, :] ^ centroids[None, :, :], axis=2).sum(axis=2).min(axis=1)
    assert int(dist.max()) < 40


def test_ivf_with_two_level_quantizer_finds_near_duplicates() -> None:
    rng = np.random.default_rng(1)
    rows = [(e, rng.integers(0, 256, (200, 32), dtype=np.uint8)) for e in range(1, 41)]
    settings = IndexSettings(ivf_min_rows=4_000, max_lists=1024, flat_train_max_lists=16, nprobe=8)
    index = BinaryVotingIndex(settings)
    index.load((1, e, d, None) for e, d in rows)
    assert [s.approximate for s in index.segments(1)] == [True]
    flips = np.packbits(rng.random((200, 256)) < 0.04, axis=1)
    top = index.shortlist(rows[7][1] ^ flips, [1], 1)
    assert top[0].entry == 8 and top[0].votes > 150


def test_a_growing_scope_moves_to_the_subset_index(blobs, views) -> None:
    index = TieredIndex(TierSettings(large_min_targets=5, subset=SubsetSettings(keep=150)))
    for t in range(6):
        index.add(1, 100 + t, blobs[t])
    index.wait_idle()
    assert index.subset_scopes() == {1}
    assert index.exact.size(1) == 0 and len(index) == 6  # its exact-index memory is freed
    index.add(1, 106, blobs[6])  # adds now go to the subset index only
    index.remove(102, 1)
    assert index.exact.size(1) == 0
    found = {t: index.search(views[t], [1], 3) for t in range(7)}
    assert [found[t][0].target for t in (0, 1, 3, 4, 5, 6)] == [100, 101, 103, 104, 105, 106]
    assert 102 not in [c.target for c in found[2]]
    assert [type(i).__name__ for i, _ in index.parts([1])] == ["SubsetIndex"]


def test_start_up_loads_a_large_scope_straight_into_the_subset_index(blobs, views) -> None:
    index = TieredIndex(TierSettings(large_min_targets=5))
    missing = index.open(np.arange(100, 108), {1: 6, 2: 2})
    assert missing.tolist() == [] and index.subset_scopes() == {1}
    index.load([(1, 100 + t, blobs[t]) for t in range(6)] + [(2, 106, blobs[6]), (2, 107, blobs[7])])
    index.wait_idle()
    assert index.exact.size(1) == 0 and index.exact.size(2) == 2
    assert index.search(views[3], [1], 1)[0].target == 103
    assert index.search(views[7], [2], 1)[0].target == 107


def test_writes_during_the_move_are_not_lost(blobs, views) -> None:
    """A remove, a replace and an add that land while the scope is being copied all hold afterwards."""
    index = TieredIndex(TierSettings(large_min_targets=5))
    copy = index.subset.load

    def copy_with_writes(items: Iterable[tuple[int, int, bytes]]) -> None:
        rows = list(items)  # the copy's snapshot is taken; now the writes arrive
        index.remove(102, 1)
        index.add(1, 103, blobs[7])  # the same id, another image
        index.add(1, 106, blobs[6])
        copy(rows)

    index.subset.load = copy_with_writes  # type: ignore[method-assign]
    for t in range(5):
        index.add(1, 100 + t, blobs[t])
    index.wait_idle()
    assert index.subset_scopes() == {1} and index.exact.size(1) == 0
    assert not index.holds(102)
    assert 102 not in [c.target for c in index.search(views[2], [1], 5)]
    assert index.search(views[7], [1], 1)[0].target == 103
    assert index.subset.fingerprints(1)[103] == fingerprint(blobs[7])  # the old image of 103 is gone
    assert index.search(views[6], [1], 1)[0].target == 106
    assert index.search(views[4], [1], 1)[0].target == 104
