"""The visual-word index: ranking, scopes, tombstones, merges, persistence and concurrency.

Real parts throughout: a small vocabulary trained on features of generated posters, and targets that are
either those posters or random word sets (queried with the words' own centroids, which assign to them).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from imagecloud.index.words import Hit, Vocabulary, WordIndex, WordSettings
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor
from tests.imagegen import encode, photo, poster

# ~8,000 words: big enough that eight posters of 1,000 descriptors each are told apart, small enough to
# train in a fraction of a second.
SETTINGS = WordSettings(coarse=64, fine=128, train_per_word=1, merge_fanout=4)
TARGETS = 8  # posters indexed by the recognition tests
EXTRA = 8  # further posters that only feed the vocabulary


def _descriptors(image: np.ndarray) -> np.ndarray:
    """Decoded and described as the service does it."""
    img = decode_image(encode(image), max_pixels=50_000_000, working_size=640)
    return FeatureExtractor().extract(img.gray, img.scale, img.width, img.height).descriptors


def _rotated_noisy(image: np.ndarray, seed: int) -> np.ndarray:
    """Rotated by 20 degrees, scaled by 0.8 and with Gaussian noise: a mild second view."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 0.8)
    view = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    noisy = view + np.random.default_rng(seed).normal(0, 6, view.shape)
    return np.asarray(np.clip(noisy, 0, 255), np.uint8)


@dataclass(frozen=True)
class Corpus:
    vocabulary: Vocabulary
    targets: list[np.ndarray]  # descriptors of poster(i), i < TARGETS


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    targets = [_descriptors(poster(i)) for i in range(TARGETS)]
    extra = [_descriptors(poster(100 + i)) for i in range(EXTRA)]
    vocabulary = Vocabulary.train(np.concatenate(targets + extra), SETTINGS)
    return Corpus(vocabulary, targets)


@pytest.fixture(scope="module")
def vocabulary(corpus: Corpus) -> Vocabulary:
    return corpus.vocabulary


def _words(vocabulary: Vocabulary, seed: int, n: int = 40) -> np.ndarray:
    """A random target: ``n`` distinct words."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(vocabulary), n, replace=False)).astype(np.int64)


def _query(vocabulary: Vocabulary, words: np.ndarray) -> np.ndarray:
    """Descriptors that assign to ``words``: the word centroids themselves."""
    return np.asarray(vocabulary.words[words])


def _targets(hits: Sequence[Hit]) -> list[int]:
    return [h.target for h in hits]


def _recount(index: WordIndex) -> np.ndarray:
    """Document frequencies counted afresh from the postings of the published shards."""
    df = np.zeros(len(index.vocabulary), np.int64)
    for sh in index._shards:
        w, _ = sh.postings()
        np.add.at(df, w.astype(np.int64), 1)
    return df


def _score_of(index: WordIndex, target: int, words: np.ndarray) -> float:
    """The score ``target`` gets for a query of ``words``, 0 if it is not found."""
    hits = index.search(_query(index.vocabulary, words), [1], 1000)
    return next((h.score for h in hits if h.target == target), 0.0)


def _random_index(vocabulary: Vocabulary, n: int, settings: WordSettings = SETTINGS) -> WordIndex:
    index = WordIndex(vocabulary, settings)
    for t in range(n):
        index.add(t, 1, _words(vocabulary, t))
    return index


# ---------------------------------------------------------------------------------------- vocabulary


class TestVocabulary:
    def test_save_and_load_give_the_same_assignments(self, corpus: Corpus, tmp_path: Path) -> None:
        vocabulary = corpus.vocabulary
        path = tmp_path / "vocabulary.npz"
        vocabulary.save(path)
        loaded = Vocabulary.load(path, SETTINGS.nprobe)
        assert len(loaded) == len(vocabulary) and loaded.digest == vocabulary.digest
        query = np.concatenate([corpus.targets[0], _descriptors(poster(555))])
        np.testing.assert_array_equal(loaded.assign(query, 3), vocabulary.assign(query, 3))
        assert not path.with_name(path.name + ".tmp").exists()

    def test_trained_words_are_distinct_enough(self, vocabulary: Vocabulary) -> None:
        assert len(vocabulary) > 4000
        own = vocabulary.assign(vocabulary.words[:500], 1)[:, 0]
        # A centroid's own word is the nearest one (identical centroids aside).
        assert (own == np.arange(500)).mean() > 0.95

    def test_assign_nothing(self, vocabulary: Vocabulary) -> None:
        for k in (1, 3):
            out = vocabulary.assign(np.zeros((0, 32), np.uint8), k)
            assert out.shape == (0, k) and out.dtype == np.int64
        index = WordIndex(vocabulary, SETTINGS)
        assert len(index.words_of(np.zeros((0, 32), np.uint8))) == 0
        index.add(1, 1, _words(vocabulary, 1))
        assert index.search(np.zeros((0, 32), np.uint8), [1], 5) == []

    def test_training_on_few_descriptors(self) -> None:
        data = np.random.default_rng(0).integers(0, 256, (30, 32), dtype=np.uint8)
        vocabulary = Vocabulary.train(data, SETTINGS)
        assert 1 <= len(vocabulary) <= 30
        labels = vocabulary.assign(data, 1)
        assert labels.shape == (30, 1) and labels.min() >= 0


# ---------------------------------------------------------------------------------------- ranking


@pytest.fixture(scope="module")
def index(corpus: Corpus) -> WordIndex:
    """The posters, in scope 1 (read only)."""
    index = WordIndex(corpus.vocabulary, SETTINGS)
    for i, desc in enumerate(corpus.targets):
        index.add(i, 1, index.words_of(desc))
    index.wait_idle()
    return index


class TestRanking:
    def test_own_descriptors_rank_first(self, corpus: Corpus, index: WordIndex) -> None:
        for i, desc in enumerate(corpus.targets):
            hits = index.search(desc, [1], 3)
            assert hits[0].target == i and hits[0].scope == 1
            assert hits[0].score > 1.2 * hits[1].score

    def test_rotated_scaled_noisy_view_ranks_first(self, index: WordIndex) -> None:
        for i in range(TARGETS):
            hits = index.search(_descriptors(_rotated_noisy(poster(i), i)), [1], 3)
            assert hits[0].target == i, _targets(hits)

    def test_simulated_photo_ranks_first(self, index: WordIndex) -> None:
        for i in range(TARGETS):
            hits = index.search(_descriptors(photo(poster(i), seed=i).image), [1], 3)
            assert hits[0].target == i, _targets(hits)

    def test_unrelated_image_scores_below_its_own_target(self, corpus: Corpus, index: WordIndex) -> None:
        stranger = index.search(_descriptors(poster(777)), [1], 1)[0].score
        assert all(index.search(d, [1], 1)[0].score > 1.2 * stranger for d in corpus.targets)

    def test_limit(self, corpus: Corpus, index: WordIndex) -> None:
        assert len(index.search(corpus.targets[0], [1], 5)) == 5
        assert index.search(corpus.targets[0], [1], 0) == []
        hits = index.search(corpus.targets[0], [1], 100)
        assert len(hits) == TARGETS and len(set(_targets(hits))) == TARGETS
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    def test_scopes(self, corpus: Corpus) -> None:
        index = WordIndex(corpus.vocabulary, SETTINGS)
        for i, desc in enumerate(corpus.targets):
            index.add(i, 1 if i < 4 else 2, index.words_of(desc))
        index.wait_idle()
        for i in range(4, TARGETS):
            only_1 = index.search(corpus.targets[i], [1], 10)
            assert only_1 and set(_targets(only_1)) <= {0, 1, 2, 3}
            assert all(h.scope == 1 for h in only_1)
            both = index.search(corpus.targets[i], [1, 2], 10)
            assert both[0] == Hit(i, 2, both[0].score)
            assert set(_targets(both)) == set(range(TARGETS))
        assert index.search(corpus.targets[0], [3], 10) == []
        assert index.search(corpus.targets[0], [], 10) == []


# ---------------------------------------------------------------------------------------- removal


class TestRemove:
    def test_removed_target_never_appears(self, vocabulary: Vocabulary) -> None:
        index = _random_index(vocabulary, 30)
        index.wait_idle()
        gone = {3, 11, 29}
        for t in gone:
            index.remove(t)
            # At once, with the postings still in their shard.
            assert t not in _targets(index.search(_query(vocabulary, _words(vocabulary, t)), [1], 50))
        assert len(index) == 27
        for t in range(30, 60):  # adds make the merger run and drop the tombstoned postings
            index.add(t, 1, _words(vocabulary, t))
        index.wait_idle()
        for t in range(60):
            found = _targets(index.search(_query(vocabulary, _words(vocabulary, t)), [1], 50))
            assert (t in found) == (t not in gone)
            if t not in gone:
                assert found[0] == t
        assert len(index) == 57
        np.testing.assert_array_equal(index._df, _recount(index))

    def test_many_removed_do_not_crowd_out_a_live_target(self, vocabulary: Vocabulary) -> None:
        """Tombstoned docs outscoring the live one in its shard must not push it out of the results."""
        index = WordIndex(vocabulary, SETTINGS)
        words = _words(vocabulary, 1)
        others = [(t, 1, _words(vocabulary, t)) for t in range(100, 130)]
        twins = [(t, 1, words) for t in range(20)]  # twenty identical targets
        index.load([*others, *twins, (99, 1, words[:30])])  # all in one shard
        for t in range(20):
            index.remove(t)
        q = _query(vocabulary, words)
        assert _targets(index.search(q, [1], 1)) == [99]
        assert _targets(index.search(q, [1], 3))[0] == 99
        index.add(200, 1, _words(vocabulary, 200))  # the merger drops the twins
        index.wait_idle()
        assert _targets(index.search(q, [1], 1)) == [99]
        assert len(index) == 32

    def test_drop_scope(self, vocabulary: Vocabulary) -> None:
        index = WordIndex(vocabulary, SETTINGS)
        for t in range(20):
            index.add(t, 1 if t % 2 else 2, _words(vocabulary, t))
        index.drop_scope(2)
        for t in range(20):
            q = _query(vocabulary, _words(vocabulary, t))
            assert (t in _targets(index.search(q, [1, 2], 20))) == bool(t % 2)
        assert index.search(_query(vocabulary, _words(vocabulary, 0)), [2], 20) == []
        index.wait_idle()
        assert len(index) == 10 and sum(index.shard_sizes()) == 10
        np.testing.assert_array_equal(index._df, _recount(index))

    def test_readd_after_remove(self, vocabulary: Vocabulary) -> None:
        """A removed id added again with another image: only the new image finds it, and a second
        removal hides it for good, through any merges."""
        index = _random_index(vocabulary, 20)
        index.wait_idle()
        old, new = _words(vocabulary, 5), _words(vocabulary, 1005)
        own = _score_of(index, 5, old)
        index.remove(5)
        index.add(5, 1, new)
        assert _targets(index.search(_query(vocabulary, new), [1], 1)) == [5]
        # The new image may share a word with the old one by chance, not its words.
        assert _score_of(index, 5, old) < 0.2 * own
        for t in range(20, 40):
            index.add(t, 1, _words(vocabulary, t))
        index.wait_idle()
        assert _targets(index.search(_query(vocabulary, new), [1], 1)) == [5]
        assert _score_of(index, 5, old) < 0.2 * own
        index.remove(5)
        for t in range(40, 80):
            index.add(t, 1, _words(vocabulary, t))
            for q in (old, new):
                assert 5 not in _targets(index.search(_query(vocabulary, q), [1], 50))
        index.wait_idle()
        for q in (old, new):
            assert 5 not in _targets(index.search(_query(vocabulary, q), [1], 50))
        np.testing.assert_array_equal(index._df, _recount(index))

    def test_removed_duplicate_stays_removed(self, vocabulary: Vocabulary) -> None:
        """A target both added and bulk loaded (vocabulary training races enrolment) is removed whole."""
        index = WordIndex(vocabulary, SETTINGS)
        index.load((t, 1, _words(vocabulary, t)) for t in range(10))
        index.add(3, 1, _words(vocabulary, 3))
        index.remove(3)
        for t in range(10, 40):  # merges rewrite the small shards, not the loaded one
            index.add(t, 1, _words(vocabulary, t))
        index.wait_idle()
        assert 3 not in _targets(index.search(_query(vocabulary, _words(vocabulary, 3)), [1], 50))

    def test_target_without_words(self, vocabulary: Vocabulary) -> None:
        """A blank image has no descriptors, hence no words: it is held but never found."""
        index = WordIndex(vocabulary, SETTINGS)
        index.add(1, 1, index.words_of(np.zeros((0, 32), np.uint8)))
        q = _query(vocabulary, _words(vocabulary, 2))
        assert index.search(q, [1], 5) == []
        index.add(2, 1, _words(vocabulary, 2))
        assert _targets(index.search(q, [1], 5)) == [2]
        index.load([(3, 1, np.zeros(0, np.int64))])
        assert _targets(index.search(q, [1], 5)) == [2]
        index.wait_idle()
        assert _targets(index.search(q, [1], 5)) == [2]


# ---------------------------------------------------------------------------------------- merging


class TestMerging:
    def test_single_adds_merge_into_few_shards(self, vocabulary: Vocabulary) -> None:
        index = _random_index(vocabulary, 100)
        index.wait_idle()
        sizes = index.shard_sizes()
        assert sum(sizes) == 100
        # Log-structured: fewer than merge_fanout shards per size class remain.
        assert len(sizes) < 3 * SETTINGS.merge_fanout
        assert index._plan(index._shards, index._dead, index._buried) == []  # nothing left for the merger
        for t in range(100):
            assert index.search(_query(vocabulary, _words(vocabulary, t)), [1], 1)[0].target == t
        np.testing.assert_array_equal(index._df, _recount(index))
        assert index.posting_stats()["postings"] == 100 * 40

    def test_document_frequencies_after_removes_and_merges(self, vocabulary: Vocabulary) -> None:
        index = _random_index(vocabulary, 100)
        removed = set(range(0, 100, 3))
        for t in removed:
            index.remove(t)
        for t in range(100, 140):
            index.add(t, 1, _words(vocabulary, t))
        index.wait_idle()
        np.testing.assert_array_equal(index._df, _recount(index))
        live = np.zeros(len(vocabulary), np.int64)
        for t in set(range(140)) - removed:
            live[_words(vocabulary, t)] += 1
        held = {int(t) for sh in index._shards for t in sh.targets}
        # Whatever tombstones are left, the postings still in the shards are exactly those counted.
        for t in held & removed:
            live[_words(vocabulary, t)] += 1
        np.testing.assert_array_equal(index._df, live)
        assert len(held & removed) < len(removed)  # the merges did drop postings
        assert len(index) == 140 - len(removed)
        for t in range(140):
            found = _targets(index.search(_query(vocabulary, _words(vocabulary, t)), [1], 3))
            assert (found[:1] == [t]) == (t not in removed)

    def test_wait_idle_after_an_add_leaves_nothing_pending(self, vocabulary: Vocabulary) -> None:
        """(remove() itself does not wake the merger: its tombstones are merged away after the next add.)"""
        settings = WordSettings(coarse=64, fine=128, train_per_word=1, merge_fanout=2)
        index = WordIndex(vocabulary, settings)
        for t in range(64):
            if t % 3 == 0:
                index.remove(t // 2)
            index.add(t, 1, _words(vocabulary, t))
            if t % 2:
                index.wait_idle()
                assert index._plan(index._shards, index._dead, index._buried) == []
        removed = {t // 2 for t in range(3, 64, 3)}  # (0 was removed before it was added)
        assert len(index) == 64 - len(removed)
        for t in range(64):
            found = _targets(index.search(_query(vocabulary, _words(vocabulary, t)), [1], 50))
            assert (t in found) == (t not in removed)

    def test_add_while_the_merger_winds_down_is_merged(self, vocabulary: Vocabulary) -> None:
        """A merge requested just as the merger thread leaves its loop must still happen."""

        leaving, leave = threading.Event(), threading.Event()

        class HeldOnItsWayOut(WordIndex):
            def _merge_loop(self) -> None:
                super()._merge_loop()
                # Decided that there is nothing to do, still alive: held here until the test lets it go.
                leaving.set()
                leave.wait()

        settings = WordSettings(coarse=64, fine=128, train_per_word=1, merge_fanout=2)
        index = HeldOnItsWayOut(vocabulary, settings)
        index.add(0, 1, _words(vocabulary, 0))
        assert leaving.wait(timeout=60), "the merger never ran"
        index.add(1, 1, _words(vocabulary, 1))  # while that merger thread is on its way out
        leave.set()
        index.wait_idle()
        assert index.shard_sizes() == [2]

    def test_load_equals_add(self, vocabulary: Vocabulary) -> None:
        items = [(t, 1 + t % 3, _words(vocabulary, t, 30 + t % 20)) for t in range(60)]
        added = WordIndex(vocabulary, SETTINGS)
        for item in items:
            added.add(*item)
        loaded = WordIndex(vocabulary, SETTINGS)
        loaded.load(iter(items))
        added.wait_idle()
        loaded.wait_idle()
        assert len(loaded.shard_sizes()) == 1 and len(loaded) == len(added) == 60
        np.testing.assert_array_equal(added._df, loaded._df)
        for t in range(0, 60, 7):
            q = _query(vocabulary, items[t][2][:25])
            for scopes in ([1], [2, 3], [1, 2, 3]):
                # Every hit (ties at a cut-off may fall either way, depending on the shards).
                a, b = added.search(q, scopes, 100), loaded.search(q, scopes, 100)
                assert [(h.target, h.scope) for h in a] == [(h.target, h.scope) for h in b]
                assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-6)
                assert a[0].target == t or t % 3 + 1 not in scopes
                top = added.search(q, scopes, 5)
                assert [h.score for h in top] == pytest.approx([h.score for h in b[:5]], rel=1e-6)


# ---------------------------------------------------------------------------------------- persistence


class TestPersistence:
    def test_save_and_open(self, vocabulary: Vocabulary, tmp_path: Path) -> None:
        index = _random_index(vocabulary, 40)
        for t in (2, 17, 39):
            index.remove(t)  # tombstones, not yet merged away
        folder = tmp_path / "words"
        index.save(folder)
        assert {p.name for p in tmp_path.iterdir()} == {"words"}
        opened = WordIndex.open(folder, vocabulary, SETTINGS)
        assert opened.shard_sizes() == index.shard_sizes()
        assert len(opened) == len(index) == 37
        np.testing.assert_array_equal(opened._df, index._df)
        for t in range(40):
            q = _query(vocabulary, _words(vocabulary, t))
            assert opened.search(q, [1], 10) == index.search(q, [1], 10)
            assert (t in _targets(opened.search(q, [1], 50))) == (t not in (2, 17, 39))
        # Saved again over the first copy, after the opened index merged the tombstones away.
        opened.add(40, 1, _words(vocabulary, 40))
        opened.wait_idle()
        opened.save(folder)
        again = WordIndex.open(folder, vocabulary, SETTINGS)
        for t in (2, 17, 39, 40, 5):
            q = _query(vocabulary, _words(vocabulary, t))
            assert again.search(q, [1], 10) == opened.search(q, [1], 10)

    def test_open_keeps_a_readded_target(self, vocabulary: Vocabulary, tmp_path: Path) -> None:
        index = _random_index(vocabulary, 20)
        index.wait_idle()
        own = _score_of(index, 4, _words(vocabulary, 4))
        index.remove(4)
        index.add(4, 1, _words(vocabulary, 1004))
        index.save(tmp_path / "words")
        opened = WordIndex.open(tmp_path / "words", vocabulary, SETTINGS)
        assert _targets(opened.search(_query(vocabulary, _words(vocabulary, 1004)), [1], 1)) == [4]
        assert _score_of(opened, 4, _words(vocabulary, 4)) < 0.2 * own
        assert len(opened) == 20
        assert opened.retain(np.arange(20)).tolist() == []

    def test_open_with_another_vocabulary_or_nothing_saved(
        self, vocabulary: Vocabulary, tmp_path: Path
    ) -> None:
        index = _random_index(vocabulary, 10)
        index.save(tmp_path / "words")
        other = Vocabulary.train(np.random.default_rng(1).integers(0, 256, (2000, 32), np.uint8), SETTINGS)
        assert other.digest != vocabulary.digest
        for opened in (
            WordIndex.open(tmp_path / "words", other, SETTINGS),
            WordIndex.open(tmp_path / "missing", vocabulary, SETTINGS),
        ):
            assert len(opened) == 0 and opened.shard_sizes() == []
            assert opened.search(other.words[:50], [1], 5) == []
            assert opened.retain(np.array([1, 2])).tolist() == [1, 2]

    def test_retain(self, vocabulary: Vocabulary) -> None:
        index = _random_index(vocabulary, 10)
        index.remove(3)
        missing = index.retain(np.array([0, 1, 2, 3, 4, 20, 21]))
        # 3 was removed from the index but is live: it must come back as missing to be added again.
        assert sorted(missing.tolist()) == [3, 20, 21]
        assert len(index) == 4
        index.load((t, 1, _words(vocabulary, t)) for t in missing)
        index.wait_idle()
        for t in range(22):
            found = _targets(index.search(_query(vocabulary, _words(vocabulary, t)), [1], 50))
            if t in (0, 1, 2, 3, 4, 20, 21):
                assert found[0] == t
            else:
                assert t not in found
        assert len(index) == 7
        assert index.retain(np.array([0, 1, 2, 3, 4, 20, 21])).tolist() == []
        np.testing.assert_array_equal(index._df, _recount(index))


# ---------------------------------------------------------------------------------------- threads


class TestConcurrency:
    def test_searches_during_adds_removes_and_merges(self, vocabulary: Vocabulary) -> None:
        settings = WordSettings(coarse=64, fine=128, train_per_word=1, merge_fanout=2)
        index = _random_index(vocabulary, 20, settings)
        removed: list[int] = []  # appended only after remove() returned
        errors: list[BaseException] = []
        searches = [0]
        counted = threading.Condition()
        stop = threading.Event()

        def reader(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    gone = set(removed)
                    t = int(rng.choice(removed)) if removed and rng.random() < 0.7 else int(rng.integers(20))
                    hits = index.search(_query(vocabulary, _words(vocabulary, t)), [1], 10)
                    assert not gone & set(_targets(hits)), (gone & set(_targets(hits)), t)
                    with counted:
                        searches[0] += 1
                        counted.notify_all()
            except BaseException as exc:
                errors.append(exc)
                with counted:
                    counted.notify_all()

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for th in threads:
            th.start()
        try:
            for t in range(20, 220):
                index.add(t, 1, _words(vocabulary, t))
                if t % 2:
                    index.remove(t - 7)
                    removed.append(t - 7)
                if t % 50 == 0:
                    index.drop_scope(5)  # an empty scope: schedules merges all the same
                if t % 10 == 0:  # let the readers in between the writes
                    with counted:
                        wanted = searches[0] + 3
                        while searches[0] < wanted and not errors:
                            counted.wait(timeout=60)
        finally:
            stop.set()
            for th in threads:
                th.join()
        index.wait_idle()
        assert not errors, errors[0]
        assert searches[0] >= 60
        for t in range(220):
            found = _targets(index.search(_query(vocabulary, _words(vocabulary, t)), [1], 50))
            if t in removed:
                assert t not in found
            else:
                assert found[0] == t
        assert len(index) == 220 - len(removed)
        np.testing.assert_array_equal(index._df, _recount(index))
