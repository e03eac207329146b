"""How much a search verifies and votes, stage by stage, on a real index (the cost of a photo of nothing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from imagecloud.index.base import Candidate
from imagecloud.recognition import search
from imagecloud.recognition.findings import Findings
from imagecloud.service.recognizer import Recognizer
from tests import imagegen


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    r = Recognizer()
    r.load(
        (1, i, r.analyse_target(imagegen.encode(imagegen.poster(300 + i))).features_blob) for i in range(12)
    )
    # Every ranked candidate is worth verifying: what is counted below is then the search's own budget.
    exact = r.index.exact
    exact.settings = dataclasses.replace(exact.settings, min_votes=0.0)
    return r


@pytest.fixture
def stages(recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[int]]]:
    """Per call of the search's verification step, the targets it verified."""
    calls: list[list[int]] = []
    verify_candidates = search.Searcher._verify_candidates
    check = search.Searcher._check

    def recorded(self: search.Searcher, *args: object, **kwargs: object) -> None:
        calls.append([])
        verify_candidates(self, *args, **kwargs)  # type: ignore[arg-type]

    def checked(
        self: search.Searcher, query: object, target: object, key: tuple[int, int], f: Findings
    ) -> None:
        calls[-1].append(key[1])
        check(self, query, target, key, f)  # type: ignore[arg-type]

    monkeypatch.setattr(search.Searcher, "_verify_candidates", recorded)
    monkeypatch.setattr(search.Searcher, "_check", checked)
    yield calls


def _photo(poster: int, **kwargs: float) -> bytes:
    return imagegen.encode(imagegen.photo(imagegen.poster(poster), 3, **kwargs).image, "jpeg", 88)  # type: ignore[arg-type]


def test_the_first_round_verifies_its_best_two_then_only_competitors(
    recognizer: Recognizer, stages: list[list[int]]
) -> None:
    settings = recognizer.searcher.settings
    assert recognizer.search(recognizer.analyse_query(_photo(999)), [1]) == []
    assert len(stages[0]) == settings.first_verify  # nothing accepted: the other four wait for the full vote
    # The full vote's shortlist, less what the first round already verified.
    assert not set(stages[1]) & set(stages[0]) and 0 < len(stages[1]) <= settings.shortlist
    stages.clear()
    (match,) = recognizer.search(recognizer.analyse_query(_photo(305)), [1])
    assert match.target_id == 5
    # Accepted in the first round: only competitors of it are verified after it, and nothing more votes.
    assert len(stages) == 1 and stages[0][0] == 5 and len(stages[0]) <= 1 + settings.competitors


def test_the_best_ranked_candidate_is_verified_below_the_gate(
    recognizer: Recognizer, stages: list[list[int]]
) -> None:
    """The gate on consistent votes stops a shortlist at its first weak candidate, except the first of all,
    which is verified from best_candidate_gate of it."""
    searcher = recognizer.searcher
    share = searcher.settings.best_candidate_gate
    query = recognizer.analyse_query(_photo(999))
    index = recognizer.index.exact

    def verified(*scores: float) -> list[int]:
        stages.clear()
        candidates = [Candidate(t, 1, score) for t, score in enumerate(scores)]
        findings = Findings(overlap=searcher.settings.acceptance.overlap)
        searcher._verify_candidates(query, index, candidates, 6.0, 1, findings, set())
        return stages[0]

    assert verified(6.0 * share, 6.0 * share, 9.0) == [0]
    assert verified(6.0, 6.0, 5.9, 9.0) == [0, 1]
    assert verified(6.0 * share - 0.1, 9.0) == []
