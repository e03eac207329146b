"""The one entry point the service layer uses for recognition.

Glues vision (decode, features, rating, verification) to the index. Every method is synchronous
and thread-safe; the service calls them from a worker pool, which is where parallelism comes from,
so OpenCV and FAISS are told to use one thread each.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import faiss
import numpy as np

from imagecloud.config import SecondPass
from imagecloud.errors import FeatureInsufficient, ImageCloudError
from imagecloud.index.binary import BinaryVotingIndex, Candidate, IndexSettings
from imagecloud.index.sealed import SavedScope, SegmentStore, fingerprint
from imagecloud.index.words import Hit, Vocabulary, WordIndex, WordSettings
from imagecloud.recognition.acceptance import AcceptanceSettings, assess
from imagecloud.recognition.findings import Findings, View
from imagecloud.vision.decode import decode_image
from imagecloud.vision.features import FeatureExtractor, Features, FeatureSettings
from imagecloud.vision.rating import SelfTest, rate, self_test
from imagecloud.vision.verify import VerifySettings, verify

cv2.setNumThreads(1)
faiss.omp_set_num_threads(1)

log = logging.getLogger(__name__)

# Reads stored features of targets by id (the service's database); ids it cannot find are left out.
FeatureSource = Callable[[Sequence[int]], dict[int, bytes]]


@dataclass(frozen=True)
class RecognizerSettings:
    max_pixels: int = 40_000_000
    target_working_size: int = 640  # long side targets are analysed at
    query_working_size: int = 800  # long side photos are analysed at
    features: FeatureSettings = field(default_factory=FeatureSettings)  # for targets (what is stored)
    # Photos keep more keypoints than targets: each side keeps only a subset of its FAST candidates,
    # and a larger photo-side subset raises the chance both sides kept the same physical corners.
    query_features: FeatureSettings = field(default_factory=lambda: FeatureSettings(keep=1500))
    index: IndexSettings = field(default_factory=IndexSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    acceptance: AcceptanceSettings = field(default_factory=AcceptanceSettings)
    # Candidates still verified after the answer is accepted: a competing target at the same place makes
    # the photo ambiguous, and a second print in it may be the more prominent one.
    competitors: int = 4
    # ... among candidates with at least this share of the accepted one's votes: a competing subject or a
    # second print draws votes like the first; the usual runner-up of a photo of one print has ~1/8.
    competitor_votes: float = 0.25
    shortlist: int = 10  # candidates geometrically verified per search
    min_query_keypoints: int = 40  # fewer and a photo cannot be searched (FeatureInsufficient)
    min_votes: float = 8.0  # candidates with fewer descriptor votes are not worth verifying
    first_votes: int = 500  # photo descriptors in the first, cheap voting round
    first_verify: int = 2  # candidates of the first round verified before the remaining descriptors vote
    # Second pass for photos the first pass accepted nothing in (small, steep or low-contrast prints):
    # "always", "evidence" (only when some target made a plausible view) or "off".
    second_pass: SecondPass = "always"
    second_working_size: int = 1400  # long side the photo is re-analysed at, upsampled if need be
    second_max_upsample: float = 1.5  # tiny photos are not blown up further: they hold nothing more
    # The second pass first verifies the best-voted candidates of pyramid levels 0-3 alone: at 1.2^3 = 1.73 <
    # 1400/800 they are finer than anything the first pass saw, which is what small and steep prints offer;
    # then the usual shortlist of all levels' votes, which glare-washed photos of real covers need.
    second_vote_octaves: int = 3
    second_fine_shortlist: int = 5
    second_features: FeatureSettings = field(
        default_factory=lambda: FeatureSettings(candidates=10_000, keep=3000, fast_threshold=8)
    )
    # Scopes with at least this many targets are searched through the visual-word index, whose RAM per
    # target is ~1/100 of the exact index's (1.8 KB against 176 KB of process RSS, bench/results/scale/);
    # smaller scopes keep the exact index, which recalls more.
    words_min_targets: int = 100_000
    words: WordSettings = field(default_factory=WordSettings)
    words_shortlist: int = 20  # word-index candidates verified per search, best-ranked first
    vocabulary_sample: int = 1_000_000  # descriptors the vocabulary is trained on
    feature_cache: int = 2048  # features of recently verified word-index candidates kept in RAM


@dataclass(frozen=True)
class TargetAnalysis:
    features_blob: bytes
    level: int
    matchratio: float
    width: int
    height: int
    format: str


@dataclass(frozen=True, eq=False)
class QueryAnalysis:
    """Opaque to the service except ``width``/``height``."""

    width: int
    height: int
    features: Features
    gray: np.ndarray
    scale: float
    data: bytes = b""  # the photo as sent, re-read at a higher resolution only by the second pass


@dataclass(frozen=True)
class Match:
    target_id: int
    scope: int
    score: float
    corners: list[list[float]]


@dataclass(frozen=True, eq=False)
class _Entry:
    scope: int
    target_id: int
    features: Features
    fingerprint: int = 0  # of the stored features blob: ties saved index rows to one version of a target


class Recognizer:
    """Analysis, indexing and search of targets.

    Two indexes: the exact descriptor index for scopes below ``words_min_targets`` (features kept in
    RAM) and, once a vocabulary exists, the visual-word index, which holds every target and serves the
    large scopes; their candidates' features are read through ``feature_source`` when verified. With
    ``index_dir`` the vocabulary, the word index and the exact index's sealed segments are kept on disk
    between runs.
    """

    def __init__(
        self,
        settings: RecognizerSettings | None = None,
        feature_source: FeatureSource | None = None,
        index_dir: Path | None = None,
    ) -> None:
        self.settings = settings or RecognizerSettings()
        self.feature_source = feature_source
        self._index_dir = index_dir
        self._words: WordIndex | None = None
        self._word_scopes: set[int] = set()  # scopes served by the word index (not in the exact one)
        self._counts: dict[int, int] = {}  # targets per scope
        self._cache: OrderedDict[int, Features] = OrderedDict()
        self._training: threading.Thread | None = None
        self._extractor = FeatureExtractor(self.settings.features)
        self._query_extractor = FeatureExtractor(self.settings.query_features)
        self._second_extractor = FeatureExtractor(self.settings.second_features)
        self._store = SegmentStore(index_dir / "exact") if index_dir is not None else None
        self._index = BinaryVotingIndex(
            self.settings.index, on_sealed=self.save_exact if self._store is not None else None
        )
        self._saving: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self.restored = 0  # targets the last load took from the saved segments instead of indexing them
        self._lock = threading.Lock()  # guards the two maps below; never held during vision work
        self._entries: dict[int, _Entry] = {}
        self._current: dict[tuple[int, int], int] = {}  # (scope, target_id) -> entry
        self._serial = itertools.count(1)

    # ----------------------------------------------------------------------------- analysis
    def analyse_target(self, data: bytes) -> TargetAnalysis:
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.target_working_size)
        feats = self._extractor.extract(img.gray, img.scale, img.width, img.height)
        rating = rate(img.gray, feats, img.scale, self._extractor)
        return TargetAnalysis(
            features_blob=feats.to_bytes(),
            level=rating.level,
            matchratio=rating.matchratio,
            width=img.width,
            height=img.height,
            format=img.format,
        )

    def analyse_query(self, data: bytes) -> QueryAnalysis:
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.query_working_size)
        feats = self._query_extractor.extract(img.gray, img.scale, img.width, img.height)
        if len(feats) < s.min_query_keypoints:
            raise FeatureInsufficient(f"only {len(feats)} keypoints in the photo")
        return QueryAnalysis(
            width=img.width, height=img.height, features=feats, gray=img.gray, scale=img.scale, data=data
        )

    def rate_query(self, query: QueryAnalysis) -> int:
        try:
            return rate(query.gray, query.features, query.scale, self._extractor).level
        except FeatureInsufficient:
            return 1

    def explain_target(self, data: bytes, features_blob: bytes) -> tuple[Features, SelfTest]:
        """A stored target's keypoints (original pixels) and how often each was re-found in the self-test.

        Re-runs the rating's fixed views on the stored original against the stored features, so the console
        can show where a target is weak; the stored level and matchratio are left as they are.
        """
        s = self.settings
        img = decode_image(data, max_pixels=s.max_pixels, working_size=s.target_working_size)
        feats = Features.from_bytes(features_blob)
        return feats, self_test(img.gray, feats, img.scale, self._extractor)

    # ----------------------------------------------------------------------------- index upkeep
    def add(self, scope: int, target_id: int, features_blob: bytes) -> None:
        feats = Features.from_bytes(features_blob)
        words = self._words
        if words is not None:
            words.add(target_id, scope, words.words_of(feats.descriptors))
        with self._lock:
            to_words = scope in self._word_scopes
            if to_words or (scope, target_id) not in self._current:  # the same id again replaces its image
                self._counts[scope] = self._counts.get(scope, 0) + 1
        if to_words:
            return
        entry = next(self._serial)
        with self._lock:
            old = self._current.get((scope, target_id))
            self._entries[entry] = _Entry(scope, target_id, feats, fingerprint(features_blob))
        self._index.add(scope, entry, feats.descriptors)
        with self._lock:
            # A replaced image (same id) is retired only once its successor is searchable.
            self._current[(scope, target_id)] = entry
        if old is not None:
            self._retire(scope, old)
        self._grow_check(scope)

    def remove(self, scope: int, target_id: int) -> None:
        if self._words is not None:
            self._words.remove(target_id)
        with self._lock:
            self._counts[scope] = max(0, self._counts.get(scope, 0) - 1)
            entry = self._current.pop((scope, target_id), None)
            self._cache.pop(target_id, None)
        if entry is not None:
            self._retire(scope, entry)

    def _retire(self, scope: int, entry: int) -> None:
        self._index.remove(scope, entry)
        with self._lock:
            self._entries.pop(entry, None)

    def drop_scope(self, scope: int) -> None:
        with self._lock:
            keys = [k for k in self._current if k[0] == scope]
            for k in keys:
                self._entries.pop(self._current.pop(k), None)
            self._counts.pop(scope, None)
            self._word_scopes.discard(scope)
        self._index.drop_scope(scope)
        if self._words is not None:
            self._words.drop_scope(scope)
        self._save_soon()

    def load(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert into the exact index at start-up (the word index is opened by :meth:`open_words`).

        With ``index_dir``, rows of the saved segments are reused for every target whose stored features
        are the ones they were built from; only the rest is indexed (see ``index.sealed``).
        """
        saved = self._store.read() if self._store is not None else {}
        claims = _claims(saved)
        rows: list[tuple[int, int, np.ndarray]] = []
        reused: dict[int, dict[int, np.ndarray]] = {}  # scope -> saved entry -> descriptors
        retired: list[tuple[int, int]] = []
        with self._lock:
            # Entry numbers continue after every saved one, claimed or not: the segments store them, and an
            # unclaimed one stays there as removed, which must not hide a new entry of the same number.
            top = max(
                (int(lab.entries.max()) for sv in saved.values() for lab in sv.labels if len(lab.entries)),
                default=0,
            )
            self._serial = itertools.count(max(top + 1, next(self._serial)))
            for scope, target_id, blob in items:
                feats = Features.from_bytes(blob)
                print_ = fingerprint(blob)
                key = (scope, target_id)
                old = self._current.get(key)
                if old is None:
                    self._counts[scope] = self._counts.get(scope, 0) + 1
                else:
                    retired.append((scope, old))
                claim = claims.pop(key, None)
                if claim is not None and claim[1] == print_ and old is None:
                    entry = claim[0]
                    reused.setdefault(scope, {})[entry] = feats.descriptors
                else:
                    entry = next(self._serial)
                    rows.append((scope, entry, feats.descriptors))
                self._entries[entry] = _Entry(scope, target_id, feats, print_)
                self._current[key] = entry
        restored = self._restore(saved, reused, rows)
        self._index.load(r for r in rows if r[0] not in restored)
        for scope in restored:
            self._index.add_rows(scope, ((e, d) for sc, e, d in rows if sc == scope))
        for scope, old in retired:
            self._retire(scope, old)
        for scope in {r[0] for r in rows} | restored:
            self._grow_check(scope)
        self._save_soon()

    def _restore(
        self,
        saved: dict[int, SavedScope],
        reused: dict[int, dict[int, np.ndarray]],
        rows: list[tuple[int, int, np.ndarray]],
    ) -> set[int]:
        """Put back the saved segments still worth keeping; returns the scopes restored.

        A segment of which too many rows no longer belong to current targets is not kept (compacting it
        would rebuild it anyway): its current targets join ``rows`` and are indexed afresh.
        """
        keep_share = 1.0 - self.settings.index.compact_dead_fraction
        restored: set[int] = set()
        count = 0
        for scope, scope_saved in saved.items():
            live = reused.get(scope, {})
            kept = []
            for seg in scope_saved.sealed.segments:
                live_rows = sum(b - a for e, (a, b) in seg.spans.items() if e in live)
                if live_rows > 0 and live_rows >= keep_share * seg.index.ntotal:
                    kept.append(seg)
                else:
                    rows.extend((scope, e, live.pop(e)) for e in seg.spans if e in live)
            if not kept:
                continue
            dead = frozenset(e for seg in kept for e in seg.spans if e not in live)
            descriptors = {e: live[e] for seg in kept for e in seg.spans if e in live}
            self._index.restore(scope, replace(scope_saved.sealed, segments=tuple(kept)), dead, descriptors)
            restored.add(scope)
            count += len(descriptors)
        self.restored = count
        return restored

    def save_exact(self) -> None:
        """Write the exact index's sealed segments not on disk yet, and a manifest naming the current ones."""
        if self._store is None:
            return
        try:
            # One save at a time, each taking its view of the index inside: an older view written after a
            # newer one would delete the newer one's files.
            with self._save_lock:
                with self._lock:
                    labels = {entry: (e.target_id, e.fingerprint) for entry, e in self._entries.items()}
                self._store.save(self._index.sealed(), labels)
        except Exception:  # the saved index is only a shortcut: indexing goes on, a restart rebuilds more
            log.exception("saving the exact index failed")

    def _save_soon(self) -> None:
        """Save in the background: writing a large segment must not delay start-up or a request."""
        if self._store is None:
            return
        thread = threading.Thread(target=self.save_exact, daemon=True, name="index-save")
        with self._lock:
            self._saving = thread
        thread.start()

    def __len__(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def memory_bytes(self) -> int:
        """Approximate RAM of the indexes plus the features kept for verification."""
        with self._lock:
            feats = sum(len(e.features) * 42 for e in self._entries.values())
        words = self._words.memory_bytes() if self._words is not None else 0
        return feats + self._index.memory_bytes() + words

    # ----------------------------------------------------------------------------- word index
    @property
    def words(self) -> WordIndex | None:
        return self._words

    def word_scopes(self) -> set[int]:
        with self._lock:
            return set(self._word_scopes)

    def open_words(self, counts: dict[int, int], live: np.ndarray) -> list[int]:
        """Start-up: open the saved vocabulary and word index, if any, and reconcile it with ``live``.

        ``counts`` are the targets per scope in the database. Returns the live target ids the saved index
        does not hold; the caller feeds their features to :meth:`add_words`. Scopes at or above the
        threshold are then served by the word index and must not be given to :meth:`load`.
        """
        vocab_path = self._vocabulary_path()
        if vocab_path is None or not vocab_path.exists():
            return []
        s = self.settings
        vocab = Vocabulary.load(vocab_path, s.words.nprobe)
        assert self._index_dir is not None
        index = WordIndex.open(self._index_dir / "words", vocab, s.words)
        missing = index.retain(live)
        with self._lock:
            self._words = index
            self._word_scopes = {sc for sc, n in counts.items() if n >= s.words_min_targets}
            for sc in self._word_scopes:
                self._counts[sc] = counts[sc]
        return [int(t) for t in missing]

    def add_words(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        """Bulk insert ``(scope, target_id, features)`` into the word index only."""
        words = self._words
        if words is None:
            return
        words.load(
            (target_id, scope, words.words_of(Features.from_bytes(blob).descriptors))
            for scope, target_id, blob in items
        )

    def save_words(self) -> None:
        """Write the word index next to its vocabulary, so the next start does not rebuild it."""
        if self._words is not None and self._index_dir is not None:
            self._words.save(self._index_dir / "words")

    def _vocabulary_path(self) -> Path | None:
        return None if self._index_dir is None else self._index_dir / "vocabulary.npz"

    def _grow_check(self, scope: int) -> None:
        """A scope that reached the threshold moves to the word index (trained first if there is none)."""
        s = self.settings
        with self._lock:
            big = self._counts.get(scope, 0) >= s.words_min_targets and scope not in self._word_scopes
            training = self._training is not None and self._training.is_alive()
        if not big or training:
            return
        if self._words is None:
            thread = threading.Thread(target=self._train_words, daemon=True, name="vocabulary-training")
            with self._lock:
                self._training = thread
            thread.start()
        else:
            self._promote(scope)

    def wait_idle(self) -> None:
        """Block until background work of both indexes has finished (tests, benchmarks)."""
        self._index.wait_idle()
        self.wait_words()

    def wait_saved(self) -> None:
        """Block until upkeep and the last background save of the exact index are done (tests, benchmarks)."""
        self._index.wait_idle()
        with self._lock:
            saving = self._saving
        if saving is not None:
            saving.join()

    def wait_words(self) -> None:
        """Block until a vocabulary training started by growth has finished (tests, benchmarks)."""
        with self._lock:
            thread = self._training
        if thread is not None:
            thread.join()
        if self._words is not None:
            self._words.wait_idle()

    def _train_words(self) -> None:
        """Train a vocabulary on the enrolled targets, index all of them by words, promote big scopes."""
        s = self.settings
        try:
            with self._lock:
                entries = list(self._entries.values())
            rng = np.random.default_rng(0)
            per_target = max(1, s.vocabulary_sample // max(1, len(entries)))
            sample = np.concatenate(
                [
                    e.features.descriptors[rng.permutation(len(e.features))[:per_target]]
                    for e in entries
                    if len(e.features)
                ]
            )
            vocab = Vocabulary.train(sample, s.words)
            path = self._vocabulary_path()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                vocab.save(path)
            index = WordIndex(vocab, s.words)
            # Targets added from here on go to the new index too; the bulk load then covers the rest
            # (a target in both is harmless: it is one target id).
            with self._lock:
                self._words = index
                entries = list(self._entries.values())
            index.load((e.target_id, e.scope, index.words_of(e.features.descriptors)) for e in entries)
            log.info("vocabulary of %d words trained; %d targets indexed by words", len(vocab), len(entries))
            with self._lock:
                big = [sc for sc, n in self._counts.items() if n >= s.words_min_targets]
            for scope in big:
                self._promote(scope)
            self.save_words()
        except Exception:  # a failed training leaves the exact index serving; logged, retried on growth
            log.exception("vocabulary training failed")

    def _promote(self, scope: int) -> None:
        """Serve ``scope`` from the word index and free its exact-index memory."""
        with self._lock:
            self._word_scopes.add(scope)
            keys = [k for k in self._current if k[0] == scope]
            for k in keys:
                self._entries.pop(self._current.pop(k), None)
        self._index.drop_scope(scope)
        self._save_soon()
        log.info("channel %d now searched through the word index", scope)

    def _features_of(self, target_ids: Sequence[int]) -> dict[int, Features]:
        out: dict[int, Features] = {}
        missing: list[int] = []
        with self._lock:
            for t in target_ids:
                f = self._cache.get(t)
                if f is None:
                    missing.append(t)
                else:
                    self._cache.move_to_end(t)
                    out[t] = f
        if missing and self.feature_source is not None:
            loaded = {t: Features.from_bytes(b) for t, b in self.feature_source(missing).items()}
            out.update(loaded)
            with self._lock:
                for t, f in loaded.items():
                    self._cache[t] = f
                while len(self._cache) > self.settings.feature_cache:
                    self._cache.popitem(last=False)
        return out

    # ----------------------------------------------------------------------------- search
    def search(self, query: QueryAnalysis, scopes: Sequence[int], max_results: int = 1) -> list[Match]:
        """Accepted matches, most prominent first; ``[]`` when nothing is accepted.

        Candidates are verified in vote order (:mod:`imagecloud.vision.verify` for the geometry,
        :mod:`imagecloud.recognition.acceptance` for the decision). Once ``max_results`` targets are
        accepted, ``competitors`` more candidates are still verified: another target that fits the same
        place in the photo makes the answer ambiguous (:mod:`imagecloud.recognition.findings`), and a
        second print in the photo may be the more prominent one.

        Voting costs time linear in the number of photo descriptors, so it happens in two rounds: the
        first ``first_votes`` descriptors (spread over the photo) vote and their best candidates are
        verified with all of the photo's features; only when that does not settle the search do the
        remaining descriptors add their votes. Both rounds together cast exactly the votes one round
        would, so the slower path loses nothing.
        """
        wanted = max(1, max_results)
        findings = self._find(query, scopes, wanted)
        return self._current_matches(findings.answers(query.width, query.height), wanted)

    def similar(self, query: QueryAnalysis, scopes: Sequence[int], limit: int) -> list[Match]:
        """Every target the photo is accepted as, best score first, even where targets compete.

        The same search as :meth:`search`, without its last step: two near-identical targets fit the same
        place in a photo, so a search answers neither, while this lists both. For telling an owner which
        existing targets a new image resembles (AddImage's ``similar``), never for answering a photo.
        """
        wanted = max(1, limit)
        return self._current_matches(self._find(query, scopes, wanted).lookalikes(), wanted)

    def _find(self, query: QueryAnalysis, scopes: Sequence[int], wanted: int) -> Findings:
        """Vote and verify until ``wanted`` targets are accepted (plus competitors), or candidates run out."""
        s = self.settings
        limit = max(s.shortlist, wanted)
        with self._lock:
            word_scopes = [sc for sc in scopes if sc in self._word_scopes]
        exact_scopes = [sc for sc in scopes if sc not in set(word_scopes)]
        findings = Findings(overlap=s.acceptance.overlap)
        if exact_scopes:
            self._search_exact(query, exact_scopes, wanted, limit, findings)
        if word_scopes and findings.accepted < wanted:
            self._verify_hits(query, word_scopes, wanted, findings)
        if not findings.accepted and query.data and self._second_look(findings):
            self._second_pass(query, exact_scopes, word_scopes, limit, wanted, findings)
        return findings

    def _second_look(self, findings: Findings) -> bool:
        mode = self.settings.second_pass
        return mode == "always" or (mode == "evidence" and findings.evidence)

    def _search_exact(
        self, query: QueryAnalysis, scopes: Sequence[int], wanted: int, limit: int, findings: Findings
    ) -> None:
        s = self.settings
        desc = query.features.descriptors
        tried: set[int] = set()
        first = min(len(desc), s.first_votes)
        ballot = self._index.ballot(desc[:first], scopes)
        scale = first / max(1, len(desc))
        top = ballot.top(s.first_verify + s.competitors)
        self._verify_candidates(query, top, s.min_votes * scale, wanted, findings, tried)
        if findings.accepted < wanted and first < len(desc):
            ballot = ballot + self._index.ballot(desc[first:], scopes)
            self._verify_candidates(query, ballot.top(limit), s.min_votes, wanted, findings, tried)

    def _verify_hits(
        self, query: QueryAnalysis, scopes: Sequence[int], wanted: int, findings: Findings
    ) -> None:
        """Verify word-index candidates best-ranked first, reading their features a few at a time."""
        words = self._words
        if words is None:
            return
        hits: list[Hit] = words.search(query.features.descriptors, scopes, self.settings.words_shortlist)
        checked = _Budget(wanted, self.settings.competitors)
        batch = 8  # the right target is usually first: read features lazily, not all 50 at once
        for start in range(0, len(hits), batch):
            chunk = hits[start : start + batch]
            feats = self._features_of([h.target for h in chunk])
            for h in chunk:
                if checked.spent(findings):
                    return
                f = feats.get(h.target)
                if f is not None:
                    # Word-index views carry entry -target: entries of the exact index are positive.
                    self._check(query, f, (h.scope, h.target), -h.target, findings)

    def _second_pass(
        self,
        query: QueryAnalysis,
        scopes: Sequence[int],
        word_scopes: Sequence[int],
        limit: int,
        wanted: int,
        findings: Findings,
    ) -> None:
        """Re-analyse the photo larger and denser, then vote and verify again.

        A print filling 15-30% of the frame, or seen at a steep angle, leaves only a few dozen of the
        first pass's keypoints on the print, and its fine detail sits below the smallest scale the
        800-px analysis sees. Upsampled to 1400 px with a lower FAST threshold and 3,000 keypoints, the
        same print gets enough correspondences to verify. The same acceptance rule decides, judged on
        what this analysis resolves; it costs several times the first pass and so runs only when that
        accepted nothing (and, with ``second_pass = "evidence"``, only when some target fitted at all).
        """
        s = self.settings
        try:
            img = decode_image(query.data, max_pixels=s.max_pixels, working_size=s.second_working_size)
        except ImageCloudError:
            return
        gray, scale = img.gray, img.scale
        long_side = max(gray.shape)
        factor = min(s.second_max_upsample, s.second_working_size / long_side)
        if factor > 1.01:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            scale /= factor
        feats = self._second_extractor.extract(gray, scale, img.width, img.height)
        if len(feats) < s.min_query_keypoints:
            return
        dense = QueryAnalysis(
            width=img.width, height=img.height, features=feats, gray=gray, scale=scale, data=b""
        )
        if scopes:
            # Two shortlists from one vote: the detail the first pass could not see (levels up to
            # second_vote_octaves) finds small and steep prints, whose few fine votes drown among the
            # coarse ones; all levels together find prints washed out by glare. Both are verified.
            fine = feats.octaves <= s.second_vote_octaves
            fine_ballot = self._index.ballot(feats.descriptors[fine], scopes)
            ballot = fine_ballot + self._index.ballot(feats.descriptors[~fine], scopes)
            tried: set[int] = set()
            top_fine = fine_ballot.top(s.second_fine_shortlist)
            self._verify_candidates(dense, top_fine, s.min_votes * fine.mean(), wanted, findings, tried)
            if findings.accepted < wanted:
                self._verify_candidates(dense, ballot.top(limit), s.min_votes, wanted, findings, tried)
        if word_scopes and findings.accepted < wanted:
            self._verify_hits(dense, word_scopes, wanted, findings)

    def _verify_candidates(
        self,
        query: QueryAnalysis,
        candidates: Sequence[Candidate],
        min_votes: float,
        wanted: int,
        findings: Findings,
        tried: set[int],
    ) -> None:
        s = self.settings
        checked = _Budget(wanted, s.competitors)
        accepted_votes = 0.0
        for cand in candidates:  # best-voted first
            weak = cand.votes < min_votes or cand.votes < s.competitor_votes * accepted_votes
            if weak or checked.spent(findings):
                break
            if cand.entry in tried:
                continue
            tried.add(cand.entry)
            with self._lock:
                e = self._entries.get(cand.entry)
            if e is not None:
                before = findings.accepted
                self._check(query, e.features, (e.scope, e.target_id), cand.entry, findings)
                if findings.accepted > before and not accepted_votes:
                    accepted_votes = cand.votes

    def _check(
        self, query: QueryAnalysis, target: Features, key: tuple[int, int], entry: int, findings: Findings
    ) -> None:
        """Verify one candidate and report its view, accepted or not, to ``findings``."""
        s = self.settings
        geometry = verify(query.features, target, s.verify)
        if geometry is None:
            return
        target_scale = max(1.0, max(target.width, target.height) / s.target_working_size)
        assessment = assess(query.features, query.scale, target, target_scale, geometry, s.acceptance)
        findings.add(View(key=key, entry=entry, corners=geometry.corners, assessment=assessment))

    def _current_matches(self, views: Sequence[View], wanted: int) -> list[Match]:
        out: list[Match] = []
        with self._lock:
            # Re-checked under the lock: a target removed while this search ran is not returned.
            for view in views:
                if view.entry < 0 or self._current.get(view.key) == view.entry:
                    scope, target_id = view.key
                    corners = view.corners.tolist()
                    out.append(
                        Match(target_id=target_id, scope=scope, score=view.assessment.score, corners=corners)
                    )
        return out[:wanted]


class _Budget:
    """Verification stops ``extra`` candidates after ``wanted`` targets were accepted (competitors)."""

    def __init__(self, wanted: int, extra: int) -> None:
        self.wanted = wanted
        self.extra = extra
        self.after = -1

    def spent(self, findings: Findings) -> bool:
        if findings.accepted < self.wanted:
            return False
        self.after += 1
        return self.after >= self.extra


def _claims(saved: dict[int, SavedScope]) -> dict[tuple[int, int], tuple[int, int]]:
    """(scope, target id) -> (entry, features fingerprint) of the saved rows; the newest entry of a target
    wins (an older one was being replaced when the save was made)."""
    claims: dict[tuple[int, int], tuple[int, int]] = {}
    for scope, scope_saved in saved.items():
        for labels in scope_saved.labels:
            triples = zip(
                labels.entries.tolist(), labels.targets.tolist(), labels.fingerprints.tolist(), strict=True
            )
            for entry, target, print_ in triples:
                if target < 0:
                    continue
                known = claims.get((scope, target))
                if known is None or known[0] < entry:
                    claims[(scope, target)] = (entry, print_)
    return claims
