from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from imagecloud.index.binary import BinaryVotingIndex, IndexSettings, _list_count
from imagecloud.index.exact import ExactIndex
from imagecloud.index.quantizer import CoarseQuantizer, flat_codes, two_level_centroids
from imagecloud.index.sealed import FORMAT
from imagecloud.vision.features import Features


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
    quantizer = CoarseQuantizer(flat)
    assert not quantizer.two_level
    queries = rows[:500]
    got, want = quantizer.search(queries, 8), flat.search(queries, 8)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def _two_level(seed: int, top_probe: int) -> tuple[np.ndarray, faiss.IndexBinaryFlat, CoarseQuantizer]:
    """Clustered rows, 1,024 centroids trained on them, and a two-level quantizer over those."""
    _, rows = _clustered(seed, 300, 30_000)
    flat = _flat(two_level_centroids(rows, 1024))
    quantizer = CoarseQuantizer(flat, top_probe=top_probe)
    assert quantizer.two_level
    return rows, flat, quantizer


def test_two_level_search_is_exact_when_every_top_cell_is_probed() -> None:
    rows, flat, quantizer = _two_level(1, top_probe=10_000)
    queries = rows[:800]
    dist, lists = quantizer.search(queries, 6)
    exact_dist, _ = flat.search(queries, 6)
    assert np.array_equal(dist, exact_dist)  # ties may name other centroids at the same distances
    named = np.unpackbits(queries[:, None, :] ^ flat_codes(flat)[lists], axis=2).sum(axis=2)
    assert np.array_equal(named, dist)  # each named centroid is at the distance given


def test_two_level_search_finds_most_nearest_centroids_and_assigns_like_it_searches() -> None:
    rows, flat, quantizer = _two_level(2, top_probe=2)
    queries = rows[:2_000]
    dist, lists = quantizer.search(queries, 4)
    exact_dist, _ = flat.search(queries, 4)
    assert np.all(dist[:, 0] >= exact_dist[:, 0])  # never nearer than the true nearest
    assert np.mean(dist[:, 0] == exact_dist[:, 0]) > 0.9
    assert np.all(np.diff(dist, axis=1) >= 0) and np.all(lists >= 0)
    assert np.array_equal(quantizer.assign(queries), lists[:, 0])


def test_list_count_follows_rows_per_list_once_the_quantizer_is_two_level() -> None:
    s = IndexSettings(max_lists=65_536, flat_train_max_lists=4096, rows_per_list=256, top_probe=2)
    assert _list_count(60_000, s) == 1024  # 4 sqrt(rows) = 980
    assert _list_count(1_000_000, s) == 4096  # both rules agree here
    assert _list_count(20_000_000, s) == 65_536  # rows / 256 = 78,125; 4 sqrt(rows) would give 16,384
    assert _list_count(200_000_000, s) == 65_536  # capped
    assert _list_count(20_000_000, IndexSettings(max_lists=4096, top_probe=2)) == 4096
    assert _list_count(20_000_000, IndexSettings(max_lists=65_536)) == 16_384  # every centroid compared


def test_ivf_segments_built_with_a_two_level_quantizer_find_their_rows() -> None:
    """Rows are put in the list their own search finds, so a stored descriptor is found at distance 0 even
    where the two-level search misses its true nearest centroid."""
    rng = np.random.default_rng(3)
    rows = [(e, rng.integers(0, 256, (200, 32), dtype=np.uint8)) for e in range(1, 61)]
    settings = IndexSettings(
        ivf_min_rows=4_000,
        max_lists=1024,
        flat_train_max_lists=16,
        rows_per_list=16,
        top_probe=1,
        nprobe=1,
    )
    index = BinaryVotingIndex(settings)
    index.load((1, e, d, None) for e, d in rows)
    [segment] = index.segments(1)
    assert segment.approximate
    for e, d in rows[::7]:
        top = index.shortlist(d, [1], 1)
        assert top[0].entry == e and top[0].votes == 200.0


def _blob(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return Features(
        points=rng.uniform(0, 100, (200, 2)).astype(np.float32),
        descriptors=rng.integers(0, 256, (200, 32), dtype=np.uint8),
        angles=np.zeros(200, np.float32),
        octaves=np.zeros(200, np.uint8),
        width=100,
        height=100,
    ).to_bytes()


def test_saved_rows_are_reused_only_by_an_index_whose_quantizer_searches_alike(tmp_path: Path) -> None:
    """Rows saved in the lists a two-level search found are not restored into an index that compares every
    centroid (nor the other way round): its descriptors would often scan other lists. They are re-indexed."""
    blobs = {t: _blob(t) for t in range(1, 41)}
    flat = IndexSettings(ivf_min_rows=4_000, max_lists=1024, flat_train_max_lists=16, nprobe=1)
    two_level = IndexSettings(**{**vars(flat), "top_probe": 1, "rows_per_list": 16})
    first = ExactIndex(two_level, tmp_path)
    first.load((1, t, b) for t, b in blobs.items())
    first.wait_saved()
    for settings, restored in ((two_level, 40), (flat, 0), (flat, 40)):
        index = ExactIndex(settings, tmp_path)
        index.load((1, t, b) for t, b in blobs.items())
        index.wait_saved()
        assert index.restored == restored
        for t in (3, 17, 40):
            [best] = index.search(Features.from_bytes(blobs[t]), [1], 1)
            assert (best.target, best.score) == (t, 200.0)


def test_a_save_of_another_format_is_rebuilt_not_read(tmp_path: Path) -> None:
    """The ids in the saved lists change meaning between formats (entry alone, then entry and geometry):
    a save written in another format is indexed afresh."""
    blobs = {t: _blob(t) for t in range(1, 41)}
    settings = IndexSettings(ivf_min_rows=4_000, max_lists=1024, flat_train_max_lists=16, nprobe=1)
    first = ExactIndex(settings, tmp_path)
    first.load((1, t, b) for t, b in blobs.items())
    first.wait_saved()
    manifest = tmp_path / "manifest.json"
    saved = json.loads(manifest.read_text())
    assert saved["format"] == FORMAT
    for restored, version in ((40, FORMAT), (0, FORMAT - 1)):
        manifest.write_text(json.dumps({**saved, "format": version}))
        index = ExactIndex(settings, tmp_path)
        index.load((1, t, b) for t, b in blobs.items())
        assert index.restored == restored
        [best] = index.search(Features.from_bytes(blobs[17]), [1], 1)
        assert (best.target, best.score) == (17, 200.0)
        index.wait_saved()
