from __future__ import annotations

import threading

import numpy as np

from imagecloud.index.binary import BinaryVotingIndex, IndexSettings


def _descriptors(seed: int, n: int = 300) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


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
        whole = index.ballot(query, [1])
        parts = index.ballot(query[:70], [1]) + index.ballot(query[70:], [1])
        assert [(c.entry, c.votes) for c in parts.top(5)] == [(c.entry, c.votes) for c in whole.top(5)]
        assert [c.entry for c in whole.top(2)] == [4, 9]
        assert index.ballot(query[:0], [1]).top(5) == []

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
    """Small thresholds force merges and IVF rebuilds so those paths run in a fast test."""

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
        index.load((1, e, _descriptors(e)) for e in range(30))
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
