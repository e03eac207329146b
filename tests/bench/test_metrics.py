from __future__ import annotations

import math

import numpy as np
import pytest

from imagecloud.bench.metrics import (
    Outcome,
    by_condition,
    distractor_metrics,
    latency_summary,
    percentile,
    query_metrics,
)


def outcome(expected: str | None, returned: str | None, **kwargs: object) -> Outcome:
    return Outcome(query="q", expected=expected, returned=returned, seconds=0.01, **kwargs)  # type: ignore[arg-type]


class TestPercentile:
    @pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
    def test_matches_numpy_linear(self, q: float) -> None:
        values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0]
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))

    def test_empty_is_nan(self) -> None:
        assert math.isnan(percentile([], 50))

    def test_single_value(self) -> None:
        assert percentile([4.0], 99) == 4.0

    def test_latency_summary_in_milliseconds(self) -> None:
        summary = latency_summary([0.010, 0.020, 0.030])
        assert summary["p50_ms"] == 20.0
        assert summary["mean_ms"] == 20.0
        assert summary["max_ms"] == 30.0
        assert summary["count"] == 3


class TestQueryMetrics:
    def test_counts_right_wrong_and_none(self) -> None:
        items = [
            outcome("a", "a"),
            outcome("b", "b"),
            outcome("c", "x"),  # wrong identifier
            outcome("d", None),  # no answer
            outcome(None, "a"),  # distractor: ignored here
        ]
        metrics = query_metrics(items)
        assert metrics["queries"] == 4
        assert metrics["correct"] == 2
        assert metrics["wrong"] == 1
        assert metrics["no_answer"] == 1
        assert metrics["recall_at_1"] == 0.5
        assert metrics["wrong_rate"] == 0.25
        assert metrics["no_answer_rate"] == 0.25

    def test_no_queries_gives_nan_rates(self) -> None:
        assert math.isnan(query_metrics([])["recall_at_1"])


class TestDistractorMetrics:
    def test_any_identifier_for_an_unenrolled_photo_is_false(self) -> None:
        metrics = distractor_metrics([outcome(None, None), outcome(None, "a"), outcome(None, None)])
        assert metrics["queries"] == 3
        assert metrics["false_matches"] == 1
        assert metrics["false_match_rate"] == pytest.approx(1 / 3)

    def test_enrolled_distractor_finding_itself_is_not_false(self) -> None:
        items = [
            outcome(None, "d1", itself="d1"),  # found itself: right
            outcome(None, "d9", itself="d2"),  # found another distractor: false
            outcome(None, "a", itself="d3"),  # found a target: false
            outcome(None, None, itself="d4"),
        ]
        metrics = distractor_metrics(items)
        assert metrics["false_matches"] == 2
        assert metrics["found_itself"] == 1

    def test_real_queries_are_ignored(self) -> None:
        assert distractor_metrics([outcome("a", "b")])["queries"] == 0


def test_by_condition_groups_per_column_value() -> None:
    items = [
        outcome("a", "a", conditions=(("camera", "Canon"),)),
        outcome("b", None, conditions=(("camera", "Canon"),)),
        outcome("c", "c", conditions=(("camera", "Droid"),)),
        outcome(None, "z", conditions=(("camera", "Droid"),)),  # distractor: not a real query
    ]
    groups = by_condition(items)
    assert groups["camera"]["Canon"]["recall_at_1"] == 0.5
    assert groups["camera"]["Droid"]["queries"] == 1
    assert groups["camera"]["Droid"]["recall_at_1"] == 1.0
