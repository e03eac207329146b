"""The answer of one search: accepted views without a competitor, most prominent first."""

from __future__ import annotations

import numpy as np

from imagecloud.recognition.acceptance import Assessment
from imagecloud.recognition.findings import Findings, View

W, H = 800, 600


def _view(
    target: int, box: tuple[float, float, float, float], accepted: bool = True, score: float = 0.9
) -> View:
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    assessment = Assessment(score if accepted else 0.2, accepted, 0.5, 0.3, 40, 500)
    return View(key=(1, target), corners=corners, assessment=assessment)


def _answer(*views: View) -> list[int]:
    findings = Findings(overlap=0.25)
    for view in views:
        findings.add(view)
    return [v.key[1] for v in findings.answers(W, H)]


def test_one_accepted_view_is_the_answer() -> None:
    assert _answer(_view(1, (100, 100, 500, 500))) == [1]


def test_a_rejected_view_is_no_answer_but_is_evidence() -> None:
    findings = Findings(overlap=0.25)
    findings.add(_view(1, (100, 100, 500, 500), accepted=False))
    assert findings.answers(W, H) == []
    assert findings.evidence and findings.accepted == 0


def test_another_target_at_the_same_place_makes_it_ambiguous() -> None:
    """Even a view that was not accepted: two targets fitting one place means a shared subject."""
    assert _answer(_view(1, (100, 100, 500, 500)), _view(2, (150, 120, 520, 480), accepted=False)) == []


def test_the_same_target_twice_is_not_a_competitor() -> None:
    assert _answer(_view(1, (100, 100, 500, 500)), _view(1, (102, 98, 501, 503), score=0.7)) == [1]


def test_two_prints_side_by_side_most_prominent_first() -> None:
    edge = _view(1, (620, 0, 800, 240), score=0.99)  # sharp, but only peeking in at the corner
    centre = _view(2, (200, 120, 560, 520), score=0.7)
    assert _answer(edge, centre) == [2, 1]


def test_lookalikes_keep_competing_targets_best_score_first() -> None:
    """What AddImage's ``similar`` lists: every accepted target, even where the answer is none."""
    findings = Findings(overlap=0.25)
    for view in (
        _view(1, (100, 100, 500, 500), score=0.6),
        _view(2, (150, 120, 520, 480), score=0.8),
        _view(2, (152, 121, 519, 481), score=0.7),  # the same target again: listed once, at its best
        _view(3, (600, 0, 800, 200), accepted=False),
    ):
        findings.add(view)
    assert findings.answers(W, H) == []
    assert [(v.key[1], v.assessment.score) for v in findings.lookalikes()] == [(2, 0.8), (1, 0.6)]
