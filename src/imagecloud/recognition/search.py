"""A search: candidates from the index, verified one by one, accepted or not, and the answer.

Candidates are verified in rank order (:mod:`imagecloud.vision.verify` for the geometry,
:mod:`imagecloud.recognition.acceptance` for the decision). Once the wanted number of targets is accepted,
``competitors`` more candidates are still verified: another target that fits the same place in the photo
makes the answer ambiguous (:mod:`imagecloud.recognition.findings`), and a second print in the photo may
be the more prominent one.

An index whose scores are votes (:class:`imagecloud.index.base.VotingIndex`) is searched in two rounds:
voting costs time linear in the number of photo descriptors, so the first ``first_votes`` descriptors
(spread over the photo) vote and their best candidates are verified with all of the photo's features;
only when that does not settle the search do the remaining descriptors add their votes. Both rounds
together cast exactly the votes one round would, so the slower path loses nothing. Any other index is
asked once for ``words_shortlist`` candidates.

When nothing is accepted, a second pass looks at the photo again, larger and denser
(:meth:`imagecloud.vision.analysis.Analyser.second_look`), and searches again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from imagecloud.index.base import Candidate, Index, VotingIndex
from imagecloud.index.binary import keypoint_geometry
from imagecloud.recognition.acceptance import AcceptanceSettings, assess
from imagecloud.recognition.findings import Findings, View
from imagecloud.vision.analysis import Analyser, QueryAnalysis
from imagecloud.vision.features import Features
from imagecloud.vision.verify import VerifySettings, verify

# When a search looks at a photo again at 1,400 px: "always", "evidence" (only when some target made a
# plausible view) or "off".
SecondPass = Literal["always", "evidence", "off"]

# Reads stored features of targets by id (the service's database); ids it cannot find are left out.
FeatureSource = Callable[[Sequence[int]], dict[int, bytes]]


@dataclass(frozen=True)
class SearchSettings:
    verify: VerifySettings = field(default_factory=VerifySettings)
    acceptance: AcceptanceSettings = field(default_factory=AcceptanceSettings)
    # Candidates still verified after the answer is accepted: a competing target at the same place makes
    # the photo ambiguous, and a second print in it may be the more prominent one.
    competitors: int = 4
    # ... among candidates with at least this share of the accepted one's votes: a competing subject or a
    # second print draws votes like the first; the usual runner-up of a photo of one print has ~1/8.
    competitor_votes: float = 0.25
    shortlist: int = 10  # candidates of a voting index verified per search
    # ... per search of an upload (AddImage's ``similar``): the print itself, sharp and full-frame, so a
    # target it copies draws the most votes; the longer shortlist is for photos, where clutter outvotes a
    # small print. On 81 weakened copies of 40 covers beside 500 photos, 4 named the same 36 copies as 10.
    upload_shortlist: int = 4
    first_votes: int = 500  # photo descriptors in the first, cheap voting round
    first_verify: int = 2  # candidates of the first round verified before the remaining descriptors vote
    # The best-ranked candidate of a shortlist is verified from this share of the index's gate on
    # consistent votes (4 of the exact index's 6, the correspondences a homography needs): at most one
    # more verification per shortlist, for the photos whose few true votes land at the gate. One of the 200
    # development covers drew 6 consistent votes in-process and fewer in the benchmark's server, whose index
    # had been trained on its targets in another order (docs/RECOGNITION.md, section 3).
    best_candidate_gate: float = 2 / 3
    # Second pass for photos the first pass accepted nothing in (small, steep or low-contrast prints).
    second_pass: SecondPass = "always"
    # The second pass first verifies the best candidates of pyramid levels 0-3 alone: at 1.2^3 = 1.73 <
    # 1400/800 they are finer than anything the first pass saw, which is what small and steep prints offer;
    # then the usual shortlist of all levels' votes, which glare-washed covers and large channels need
    # (docs/RECOGNITION.md, section 4).
    second_vote_octaves: int = 3
    second_fine_shortlist: int = 5
    words_shortlist: int = 20  # candidates of a ranked (word) index verified per search, best-ranked first
    feature_cache: int = 2048  # features of recently verified candidates read from storage, kept in RAM


@dataclass(frozen=True)
class Match:
    target_id: int
    scope: int
    score: float
    corners: list[list[float]]


class Catalogue(Protocol):
    """What a search needs of the index: which index serves which scopes, and whether a target is held."""

    def parts(self, scopes: Sequence[int]) -> list[tuple[Index, list[int]]]: ...

    def holds(self, target: int) -> bool: ...


class FeatureCache:
    """Features of candidates read from storage, the most recently used kept in RAM."""

    def __init__(self, size: int, source: FeatureSource | None = None) -> None:
        self.size = size
        self.source = source
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, Features] = OrderedDict()

    def get(self, targets: Sequence[int]) -> dict[int, Features]:
        out: dict[int, Features] = {}
        missing: list[int] = []
        with self._lock:
            for t in targets:
                f = self._cache.get(t)
                if f is None:
                    missing.append(t)
                else:
                    self._cache.move_to_end(t)
                    out[t] = f
        if missing and self.source is not None:
            loaded = {t: Features.from_bytes(b) for t, b in self.source(missing).items()}
            out.update(loaded)
            with self._lock:
                for t, f in loaded.items():
                    self._cache[t] = f
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        return out

    def forget(self, target: int) -> None:
        with self._lock:
            self._cache.pop(target, None)


class Searcher:
    """Searches of one catalogue; thread-safe, since every search keeps its state in its own findings."""

    def __init__(
        self,
        settings: SearchSettings,
        analyser: Analyser,
        catalogue: Catalogue,
        cache: FeatureCache | None = None,
    ) -> None:
        self.settings = settings
        self.analyser = analyser
        self.catalogue = catalogue
        self.cache = cache or FeatureCache(settings.feature_cache)

    def search(self, query: QueryAnalysis, scopes: Sequence[int], max_results: int = 1) -> list[Match]:
        """Accepted matches, most prominent first; ``[]`` when nothing is accepted."""
        wanted = max(1, max_results)
        findings = self.find(query, scopes, wanted)
        return self._current_matches(findings.answers(query.width, query.height), wanted)

    def similar(self, query: QueryAnalysis, scopes: Sequence[int], limit: int) -> list[Match]:
        """Every target the photo is accepted as, best score first, even where targets compete.

        The same search as :meth:`search` without the second look (see :meth:`find`), and without its last
        step: two near-identical targets fit the same place in a photo, so a search answers neither, while
        this lists both. For telling an owner which existing targets a new image resembles (AddImage's
        ``similar``), never for answering a photo.
        """
        wanted = max(1, limit)
        found = self.find(query, scopes, wanted, upload=True)
        return self._current_matches(found.lookalikes(), wanted)

    def find(
        self,
        query: QueryAnalysis,
        scopes: Sequence[int],
        wanted: int,
        *,
        first_round: bool = False,
        upload: bool = False,
    ) -> Findings:
        """Vote and verify until ``wanted`` targets are accepted (plus competitors), or candidates run out.

        With ``first_round``, only the cheap first voting round and its verification: what a search over
        several index shards asks of each first (:mod:`imagecloud.cluster.recognizer`), before it asks
        for the rest only if no shard settled the photo. With ``upload``, the image is the print itself
        (AddImage's ``similar``), sharp and filling the frame: never the dense second pass, since what that
        pass is for (small, steep, washed-out prints in photos) cannot occur and it is most of what a search
        that finds nothing costs, and a shorter shortlist (``upload_shortlist``).
        """
        parts = self.catalogue.parts(scopes)
        findings = Findings(overlap=self.settings.acceptance.overlap)
        self._pass(query, parts, wanted, findings, second=False, first_round=first_round, upload=upload)
        if first_round or upload:
            return findings
        if not findings.accepted and query.data and self._second_look(findings):
            dense = self.analyser.second_look(query)
            if dense is not None:
                self._pass(dense, parts, wanted, findings, second=True)
        return findings

    def _second_look(self, findings: Findings) -> bool:
        mode = self.settings.second_pass
        return mode == "always" or (mode == "evidence" and findings.evidence)

    def _pass(
        self,
        query: QueryAnalysis,
        parts: Sequence[tuple[Index, list[int]]],
        wanted: int,
        findings: Findings,
        *,
        second: bool,
        first_round: bool = False,
        upload: bool = False,
    ) -> None:
        """Search each serving index in turn while fewer than ``wanted`` targets are accepted."""
        for index, scopes in parts:
            if findings.accepted >= wanted:
                return
            if not isinstance(index, VotingIndex):
                self._verify_ranked(query, index, scopes, wanted, findings)
            elif second:
                self._vote_second(query, index, scopes, wanted, findings)
            else:
                self._vote_first(query, index, scopes, wanted, findings, first_round, upload)

    def _vote_first(
        self,
        query: QueryAnalysis,
        index: VotingIndex,
        scopes: Sequence[int],
        wanted: int,
        findings: Findings,
        first_round: bool = False,
        upload: bool = False,
    ) -> None:
        s = self.settings
        limit = max(s.upload_shortlist if upload else s.shortlist, wanted)
        desc = query.features.descriptors
        geo = keypoint_geometry(query.features.angles, query.features.octaves)
        tried: set[int] = set()
        first = min(len(desc), s.first_votes)
        ballot = index.vote(desc[:first], geo[:first], scopes)
        scale = first / max(1, len(desc))
        top = index.ranked(ballot, s.first_verify + s.competitors)
        # Only the first_verify best are verified on their own; the others only as competitors of an accepted
        # one. A photo of nothing would otherwise pay for all of them here, and again after the full vote.
        self._verify_candidates(
            query, index, top, index.min_votes * scale, wanted, findings, tried, unaccepted=s.first_verify
        )
        if findings.accepted < wanted and first < len(desc) and not first_round:
            ballot = ballot + index.vote(desc[first:], geo[first:], scopes)
            self._verify_candidates(
                query, index, index.ranked(ballot, limit), index.min_votes, wanted, findings, tried
            )

    def _vote_second(
        self, dense: QueryAnalysis, index: VotingIndex, scopes: Sequence[int], wanted: int, findings: Findings
    ) -> None:
        """Two shortlists from one vote: the detail the first pass could not see (levels up to
        second_vote_octaves) finds small and steep prints, whose few fine votes drown among the coarse ones;
        all levels together find prints that only the whole photo's votes bring up (in channels of 50,000
        targets, 2 of the 200 development covers)."""
        s = self.settings
        feats = dense.features
        fine = feats.octaves <= s.second_vote_octaves
        geo = keypoint_geometry(feats.angles, feats.octaves)
        fine_ballot = index.vote(feats.descriptors[fine], geo[fine], scopes)
        ballot = fine_ballot + index.vote(feats.descriptors[~fine], geo[~fine], scopes)
        tried: set[int] = set()
        top_fine = index.ranked(fine_ballot, s.second_fine_shortlist)
        self._verify_candidates(
            dense, index, top_fine, index.min_votes * fine.mean(), wanted, findings, tried
        )
        if findings.accepted < wanted:
            top = index.ranked(ballot, max(s.shortlist, wanted))
            self._verify_candidates(dense, index, top, index.min_votes, wanted, findings, tried)

    def _verify_ranked(
        self, query: QueryAnalysis, index: Index, scopes: Sequence[int], wanted: int, findings: Findings
    ) -> None:
        """Verify a ranked index's candidates best first, reading their features a few at a time."""
        candidates = index.search(query.features, scopes, self.settings.words_shortlist)
        checked = _Budget(wanted, self.settings.competitors)
        batch = 8  # the right target is usually first: read features lazily, not all of them at once
        for start in range(0, len(candidates), batch):
            chunk = candidates[start : start + batch]
            feats = self._features(index, [c.target for c in chunk])
            for cand in chunk:
                if checked.spent(findings):
                    return
                f = feats.get(cand.target)
                if f is not None:
                    self._check(query, f, (cand.scope, cand.target), findings)

    def _verify_candidates(
        self,
        query: QueryAnalysis,
        index: Index,
        candidates: Sequence[Candidate],
        min_votes: float,
        wanted: int,
        findings: Findings,
        tried: set[int],
        unaccepted: int | None = None,
    ) -> None:
        """Verify ``candidates`` in rank order until the budget is spent or one is under the gate; with
        ``unaccepted``, at most that many while none of them has been accepted."""
        s = self.settings
        checked = _Budget(wanted, s.competitors)
        accepted_votes = 0.0
        verified = 0
        for rank, cand in enumerate(candidates):  # most consistent votes first
            gate = min_votes * (s.best_candidate_gate if rank == 0 else 1.0)
            weak = cand.score < gate or cand.score < s.competitor_votes * accepted_votes
            if weak or checked.spent(findings):
                break
            if unaccepted is not None and not accepted_votes and verified >= unaccepted:
                break
            if cand.target in tried:
                continue
            tried.add(cand.target)
            verified += 1
            target = self._features(index, [cand.target]).get(cand.target)
            if target is not None:
                before = findings.accepted
                self._check(query, target, (cand.scope, cand.target), findings)
                if findings.accepted > before and not accepted_votes:
                    accepted_votes = cand.score

    def _check(
        self, query: QueryAnalysis, target: Features, key: tuple[int, int], findings: Findings
    ) -> None:
        """Verify one candidate and report its view, accepted or not, to ``findings``."""
        s = self.settings
        geometry = verify(query.features, target, s.verify)
        if geometry is None:
            return
        target_scale = self.analyser.target_scale(target)
        assessment = assess(query.features, query.scale, target, target_scale, geometry, s.acceptance)
        findings.add(View(key=key, corners=geometry.corners, assessment=assessment))

    def _features(self, index: Index, targets: Sequence[int]) -> dict[int, Features]:
        """Features from the index where it keeps them, else from storage."""
        out = index.features(targets)
        missing = [t for t in targets if t not in out]
        if missing:
            out.update(self.cache.get(missing))
        return out

    def _current_matches(self, views: Sequence[View], wanted: int) -> list[Match]:
        # A target removed while this search ran is not returned.
        return matches_of(views, wanted, self.catalogue.holds)


def matches_of(views: Sequence[View], wanted: int, holds: Callable[[int], bool]) -> list[Match]:
    """The first ``wanted`` of ``views`` whose target is still held, as matches."""
    out: list[Match] = []
    for view in views:
        scope, target_id = view.key
        if holds(target_id):
            corners = view.corners.tolist()
            out.append(Match(target_id=target_id, scope=scope, score=view.assessment.score, corners=corners))
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
