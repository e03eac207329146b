from __future__ import annotations

import os
import threading

import faiss
import numpy as np
import pytest

from imagecloud.index.binary import BinaryVotingIndex, IndexSettings, keypoint_geometry


def _descriptors(seed: int, n: int = 300) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


def _geometry(seed: int, n: int = 300) -> np.ndarray:
    """Keypoint geometry bytes of random orientations on pyramid levels 1-5."""
    rng = np.random.default_rng(seed + 10_000)
    return keypoint_geometry(rng.uniform(0, 360, n), rng.integers(1, 6, n))


def _seen_turned(geometry: np.ndarray, steps: int, levels: int, seed: int) -> np.ndarray:
    """The geometry of the same keypoints in a photo turned by ``steps`` orientation steps and ``levels``
    pyramid levels, each keypoint off by up to one step and one level the other way, as rounding does."""
    rng = np.random.default_rng(seed)
    angle = ((geometry >> 3).astype(np.int64) + steps - rng.integers(0, 2, len(geometry))) % 32
    level = (geometry & 7).astype(np.int64) + levels + rng.integers(0, 2, len(geometry))
    return (angle << 3 | level).astype(np.uint8)


def _noisy(desc: np.ndarray, seed: int, bits: int = 3) -> np.ndarray:
    """Flip a few bits per descriptor, as a second photo of the same corner would."""
    rng = np.random.default_rng(seed)
    out = desc.copy()
    for row in out:
        for b in rng.integers(0, 256, bits):
            row[b // 8] ^= np.uint8(1 << (b % 8))
    return out


class TestShortlist:
    def test_ballots_of_disjoint_descriptor_sets_add_up(self) -> None:
        index = BinaryVotingIndex()
        for e in range(20):
            index.add(1, e, _descriptors(e))
        query = np.concatenate([_noisy(_descriptors(4), 1)[:120], _noisy(_descriptors(9), 2)[:80]])
        geo = _geometry(99, len(query))
        whole = index.ballot(query, [1], geo)
        parts = index.ballot(query[:70], [1], geo[:70]) + index.ballot(query[70:], [1], geo[70:])
        assert parts.top(5) == whole.top(5)
        assert [c.entry for c in whole.top(2)] == [4, 9]
        assert index.ballot(query[:0], [1]).top(5) == []

    def test_keypoint_geometry_is_orientation_step_above_level(self) -> None:
        geo = keypoint_geometry(np.array([0.0, 11.3, 359.9, -5.0, 190.0]), np.array([0, 3, 7, 9, 2]))
        assert (geo >> 3).tolist() == [0, 1, 31, 31, 16]
        assert (geo & 7).tolist() == [0, 3, 7, 7, 2]

    def test_votes_that_agree_on_turn_and_scale_outrank_more_votes_that_do_not(self) -> None:
        """A photo of entry 4, upright (its orientations rounded to either side of 0 degrees, where the
        sectors wrap around) and one level finer, beside more votes for entry 9 from keypoints of every
        orientation and level."""
        index = BinaryVotingIndex()
        for e in range(20):
            index.add(1, e, _descriptors(e), _geometry(e))
        photo4 = _seen_turned(_geometry(4)[:60], 0, 1, seed=1)
        scattered = _geometry(77, 90)
        query = np.concatenate([_noisy(_descriptors(4), 1)[:60], _noisy(_descriptors(9), 2)[:90]])
        top = index.shortlist(query, [1], 2, np.concatenate([photo4, scattered]))
        assert [(c.entry, c.votes, c.consistent) for c in top[:1]] == [(4, 60.0, 60.0)]
        assert top[1].entry == 9 and top[1].votes == 90 and top[1].consistent < 30
        # The same votes without geometry rank by their number.
        assert [c.entry for c in index.shortlist(query, [1], 2)] == [9, 4]

    def test_best_entry_first(self) -> None:
        index = BinaryVotingIndex()
        for e in range(20):
            index.add(1, e, _descriptors(e))
        top = index.shortlist(_noisy(_descriptors(7), 99)[:150], [1], 3)
        assert top[0].entry == 7 and top[0].scope == 1
        assert top[0].votes >= 100

    def test_scopes_are_separate(self) -> None:
        index = BinaryVotingIndex()
        index.add(1, 1, _descriptors(1))
        index.add(2, 2, _descriptors(2))
        assert [c.entry for c in index.shortlist(_descriptors(2), [1], 5)] == []
        assert index.shortlist(_descriptors(2), [1, 2], 5)[0].entry == 2
        index.drop_scope(2)
        assert index.shortlist(_descriptors(2), [2], 5) == []

    def test_remove(self) -> None:
        index = BinaryVotingIndex()
        for e in range(5):
            index.add(1, e, _descriptors(e))
        index.remove(1, 3)
        assert 3 not in [c.entry for c in index.shortlist(_descriptors(3), [1], 10)]
        assert len(index) == 4


class TestApproximateSegments:
    """Small thresholds force merges and IVF builds so those paths run in a fast test."""

    settings = IndexSettings(
        ivf_min_rows=3000,
        flat_max_rows=1000,
        max_small_segments=3,
        max_lists=64,
        train_per_list=40,
        nprobe=64,
    )

    def test_load_builds_ivf_and_finds(self) -> None:
        index = BinaryVotingIndex(self.settings)
        index.load((1, e, _descriptors(e), None) for e in range(30))
        assert index.shortlist(_noisy(_descriptors(12), 5), [1], 1)[0].entry == 12

    def test_adds_after_rebuild_and_tombstones_survive(self) -> None:
        index = BinaryVotingIndex(self.settings)
        for e in range(40):
            index.add(1, e, _descriptors(e))
            if e % 7 == 0:
                index.remove(1, e)
        index.wait_idle()
        for e in range(40):
            found = [c.entry for c in index.shortlist(_descriptors(e), [1], 1)]
            assert found == ([] if e % 7 == 0 else [e])

    def test_incremental_adds_end_in_ivf_without_duplicate_rows(self) -> None:
        """Adds that keep coming while rebuilds run must not leave a growing exact part behind."""
        index = BinaryVotingIndex(self.settings)
        for e in range(200):
            index.add(1, e, _descriptors(e))
        index.wait_idle()
        exact, approximate, entries = index.segment_rows(1)
        assert entries == 200
        assert exact + approximate == 200 * 300  # every row once: none lost, none repeated
        assert exact < self.settings.flat_max_rows
        for e in (0, 99, 199):
            assert index.shortlist(_noisy(_descriptors(e), 1), [1], 1)[0].entry == e


class TestConcurrency:
    def test_search_while_writing(self) -> None:
        index = BinaryVotingIndex(
            IndexSettings(ivf_min_rows=6000, flat_max_rows=2000, max_small_segments=4, max_lists=64)
        )
        for e in range(10):
            index.add(1, e, _descriptors(e))
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.is_set():
                    top = index.shortlist(_descriptors(3), [1], 1)
                    assert top and top[0].entry == 3
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for e in range(100, 160):
            index.add(1, e, _descriptors(e))
            index.remove(1, e - 1)
        stop.set()
        for t in threads:
            t.join()
        index.wait_idle()
        assert not errors
        assert index.shortlist(_descriptors(158), [1], 1) == []
        assert index.shortlist(_descriptors(159), [1], 1)[0].entry == 159


def _flipped(desc: np.ndarray, bits: int) -> np.ndarray:
    """``desc`` with exactly ``bits`` distinct bits flipped in every row: at that Hamming distance from it."""
    out = desc.copy()
    for row in out:
        for b in range(bits):
            row[b] ^= np.uint8(1)
    return out


class TestSegmentPolicy:
    """Upkeep work per add stays bounded in a large scope, and segmentation never changes the votes."""

    settings = IndexSettings(
        ivf_min_rows=3000,
        flat_max_rows=1000,
        max_small_segments=3,
        merge_factor=2,
        max_lists=64,
        nprobe=64,  # every list probed: the IVF segments answer exactly, so votes can be compared exactly
    )

    def test_adds_into_a_big_scope_never_rebuild_its_big_segment(self) -> None:
        index = BinaryVotingIndex(self.settings)
        index.load((1, e, _descriptors(e), None) for e in range(200))  # 60,000 rows, one trained IVF segment
        [big] = index.segments(1)
        assert big.approximate and big.rows == 60_000
        added = 0
        for e in range(1000, 1040):
            index.add(1, e, _descriptors(e))
            added += 300
        index.wait_idle()
        segments = index.segments(1)
        assert big in segments  # the very same segment, untouched
        exact, approximate, entries = index.segment_rows(1)
        assert (exact + approximate, entries) == (72_000, 240)
        assert exact < self.settings.flat_max_rows  # the adds were sealed (and merged) beside it
        # Sealing writes each new row once and each merge level once more: with 12,000 new rows in classes
        # of 1,000 x 2^n that is at most 1 + log2(12) writes per row, far below one rebuild of the scope.
        assert 0 < index.rows_built <= added * 5
        for e in (5, 1001, 1039):
            assert index.shortlist(_noisy(_descriptors(e), 3), [1], 1)[0].entry == e

    def test_votes_do_not_depend_on_segmentation(self) -> None:
        """Near copies of one set of descriptors, added far apart, land in different segments; each query
        descriptor must still vote for its 3 nearest rows of the whole scope, not 3 per segment."""
        index = BinaryVotingIndex(IndexSettings(**{**vars(self.settings), "retrain_growth": 100.0}))
        base = _descriptors(7777)
        copies = [_flipped(base, 2 * j + 1) for j in range(5)]  # at distance 1, 3, 5, 7, 9 from base
        added: list[int] = []
        segment_counts = []
        for e in range(80):
            if e % 16 == 3:
                added.append(5000 + len(added))
                index.add(1, added[-1], copies[len(added) - 1])
            index.add(1, e, _descriptors(e))
            if e % 8 == 7:
                # The same votes at every moment, whatever the background jobs are doing ...
                expected = [(c, 300.0) for c in added[:3]]
                assert [(c.entry, c.votes) for c in index.shortlist(base, [1], 10)] == expected
                index.wait_idle()
                # ... and once they are done.
                assert [(c.entry, c.votes) for c in index.shortlist(base, [1], 10)] == expected
                segment_counts.append(len(index.segments(1)))
        assert max(segment_counts) >= 3
        # A removed row gives its place to the next nearest live one instead of leaving it empty.
        index.remove(1, 5001)
        assert [c.entry for c in index.shortlist(base, [1], 10)] == [5000, 5002, 5003]

    def test_removed_rows_are_compacted_away(self) -> None:
        index = BinaryVotingIndex(self.settings)
        index.load((1, e, _descriptors(e), None) for e in range(40))
        [big] = index.segments(1)
        for e in range(0, 40, 3):
            index.remove(1, e)
            index.wait_idle()
        [compacted] = index.segments(1)
        assert compacted != big
        # Rewritten once the 10th removal made a quarter of it dead; the 4 later removals are tombstones.
        assert compacted.rows == 30 * 300
        assert index.shortlist(_descriptors(3), [1], 5) == []
        assert index.shortlist(_noisy(_descriptors(4), 1), [1], 1)[0].entry == 4

    def test_rebuilt_segments_keep_every_row(self) -> None:
        """The index keeps no copy of the descriptors beside its segments: a rebuild (seal, merge, compact,
        retrain) reads them back from the segments it replaces and must give each live entry all its rows."""
        index = BinaryVotingIndex(IndexSettings(**{**vars(self.settings), "retrain_growth": 3.0}))
        index.load((1, e, _descriptors(e), _geometry(e)) for e in range(12))
        live = set(range(12))
        for e in range(12, 48):
            index.add(1, e, _descriptors(e), _geometry(e))
            live.add(e)
            if e % 5 == 0:
                index.remove(1, e - 7)
                live.discard(e - 7)
        index.wait_idle()
        assert index.rows_built > 40 * 300  # the scope was rebuilt, not only appended to
        assert len(index) == len(live)
        for e in range(48):
            # Each descriptor finds its own row at distance 0, and random others are far beyond max_distance;
            # rows that kept their geometry all agree with the photo's.
            expected = [(e, 300.0, 300.0)] if e in live else []
            found = index.shortlist(_descriptors(e), [1], 3, _geometry(e))
            assert [(c.entry, c.votes, c.consistent) for c in found] == expected

    def test_quantizer_is_retrained_once_the_scope_has_grown(self) -> None:
        index = BinaryVotingIndex(IndexSettings(**{**vars(self.settings), "retrain_growth": 2.0}))
        index.load((1, e, _descriptors(e), None) for e in range(10))  # 3,000 rows: trained on these
        [first] = index.segments(1)
        for e in range(10, 21):  # 6,300 rows: past twice the rows the quantizer was trained on
            index.add(1, e, _descriptors(e))
        index.wait_idle()
        segments = index.segments(1)
        assert first not in segments
        assert max(s.rows for s in segments) >= 6_000  # one new segment over the whole scope
        assert index.shortlist(_noisy(_descriptors(2), 1), [1], 1)[0].entry == 2
        assert index.shortlist(_noisy(_descriptors(20), 1), [1], 1)[0].entry == 20


class TestThreads:
    @pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="FAISS uses one thread anyway on one core")
    def test_faiss_runs_single_threaded_in_any_calling_thread(self) -> None:
        """OpenMP's thread count is per calling thread; worker threads must get one thread too."""
        index = BinaryVotingIndex()
        index.add(1, 1, _descriptors(1))
        seen: list[int] = []

        def worker() -> None:
            seen.append(faiss.omp_get_max_threads())
            index.ballot(_descriptors(1), [1])
            seen.append(faiss.omp_get_max_threads())

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert seen[0] > 1  # a fresh thread starts with OpenMP's default, one per core
        assert seen[1] == 1
