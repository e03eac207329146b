from __future__ import annotations

import faiss
import numpy as np

from imagecloud.index.binary import BinaryVotingIndex, IndexSettings, _list_count
from imagecloud.index.quantizer import CoarseQuantizer, two_level_centroids


def _clustered(seed: int, centres: int, rows: int, flip: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """Rows scattered around random centres (a few bits flipped), like descriptors of similar corners."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 256, (centres, 32), dtype=np.uint8)
    flips = np.packbits(rng.random((rows, 256)) < flip, axis=1)
    return c, c[rng.integers(0, centres, rows)] ^ flips


def _flat(centroids: np.ndarray) -> faiss.IndexBinaryFlat:
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(centroids))
    return index


def test_small_quantizers_compare_every_centroid() -> None:
    _, rows = _clustered(0, 100, 5_000)
    flat = _flat(two_level_centroids(rows, 256))
    quantizer = CoarseQuantizer(flat, flat_max=4096, top_probe=2)
    assert not quantizer.two_level
    queries = rows[:500]
    got, want = quantizer.search(queries, 8), flat.search(queries, 8)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_two_level_search_is_exact_when_every_top_cell_is_probed() -> None:
    _, rows = _clustered(1, 300, 30_000)
    flat = _flat(two_level_centroids(rows, 1024))
    quantizer = CoarseQuantizer(flat, flat_max=64, top_probe=10_000)
    assert quantizer.two_level
    queries = rows[:800]
    dist, lists = quantizer.search(queries, 6)
    exact_dist, _ = flat.search(queries, 6)
    assert np.array_equal(dist, exact_dist)  # ties may name other centroids at the same distances
    centroids = faiss.vector_to_array(flat.xb).reshape(-1, 32)  # type: ignore[attr-defined]
    named = np.unpackbits(queries[:, None, :] ^ centroids[lists], axis=2).sum(axis=2)
    assert np.array_equal(named, dist)  # each named centroid is at the distance given


def test_two_level_search_finds_most_nearest_centroids_and_assigns_like_it_searches() -> None:
    _, rows = _clustered(2, 300, 30_000)
    flat = _flat(two_level_centroids(rows, 1024))
    quantizer = CoarseQuantizer(flat, flat_max=64, top_probe=2)
    assert quantizer.two_level
    queries = rows[:2_000]
    dist, lists = quantizer.search(queries, 4)
    exact_dist, _ = flat.search(queries, 4)
    assert np.all(dist[:, 0] >= exact_dist[:, 0])  # never nearer than the true nearest
    assert np.mean(dist[:, 0] == exact_dist[:, 0]) > 0.9
    assert np.all(np.diff(dist, axis=1) >= 0) and np.all(lists >= 0)
    assert np.array_equal(quantizer.assign(queries), lists[:, 0])


def test_list_count_follows_rows_per_list_once_the_quantizer_is_two_level() -> None:
    s = IndexSettings(max_lists=65_536, flat_quantizer_max_lists=4096, rows_per_list=256)
    assert _list_count(60_000, s) == 1024  # 4 sqrt(rows) = 980
    assert _list_count(1_000_000, s) == 4096  # both rules agree here
    assert _list_count(20_000_000, s) == 65_536  # rows / 256 = 78,125; 4 sqrt(rows) would give 16,384
    assert _list_count(200_000_000, s) == 65_536  # capped
    assert _list_count(20_000_000, IndexSettings(max_lists=4096)) == 4096


def test_ivf_segments_built_with_a_two_level_quantizer_find_their_rows() -> None:
    """Rows are put in the list their own search finds, so a stored descriptor is found at distance 0 even
    where the two-level search misses its true nearest centroid."""
    rng = np.random.default_rng(3)
    rows = [(e, rng.integers(0, 256, (200, 32), dtype=np.uint8)) for e in range(1, 61)]
    settings = IndexSettings(
        ivf_min_rows=4_000,
        max_lists=1024,
        flat_quantizer_max_lists=16,
        rows_per_list=16,
        top_probe=1,
        nprobe=1,
    )
    index = BinaryVotingIndex(settings)
    index.load((1, e, d) for e, d in rows)
    [segment] = index.segments(1)
    assert segment.approximate
    for e, d in rows[::7]:
        top = index.shortlist(d, [1], 1)
        assert top[0].entry == e and top[0].votes == 200.0
