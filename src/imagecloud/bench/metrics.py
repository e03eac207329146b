"""Metric arithmetic for recognition benchmarks, kept pure so it can be unit-tested."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One query's result: ``expected`` None for a distractor, ``returned`` None for no answer.

    ``itself`` is a distractor photo's own identifier when that same photo is also enrolled: finding itself
    is right, not a false match.
    """

    query: str
    expected: str | None
    returned: str | None
    seconds: float
    conditions: tuple[tuple[str, str], ...] = ()
    itself: str | None = None
    group: str = ""  # "" for photos of targets; the name of the negative set a photo of nothing belongs to
    score: float | None = None  # the answer's score, when there is one

    @property
    def correct(self) -> bool:
        return self.expected is not None and self.returned == self.expected

    @property
    def wrong(self) -> bool:
        """Returned an identifier that is not the right one (for a distractor: any but its own)."""
        return self.returned is not None and self.returned not in (self.expected, self.itself)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in 0..100; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else math.nan,
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else math.nan,
    }


def rate(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def query_metrics(outcomes: Iterable[Outcome]) -> dict[str, float | int]:
    """recall@1, wrong-identifier rate and no-answer rate over queries of enrolled targets."""
    items = [o for o in outcomes if o.expected is not None]
    correct = sum(o.correct for o in items)
    wrong = sum(o.wrong for o in items)
    none = sum(o.returned is None for o in items)
    return {
        "queries": len(items),
        "correct": correct,
        "wrong": wrong,
        "no_answer": none,
        "recall_at_1": rate(correct, len(items)),
        "wrong_rate": rate(wrong, len(items)),
        "no_answer_rate": rate(none, len(items)),
    }


def distractor_metrics(outcomes: Iterable[Outcome]) -> dict[str, float | int]:
    """False matches: any identifier returned for a photo of something not enrolled."""
    items = [o for o in outcomes if o.expected is None]
    false = sum(o.wrong for o in items)
    found_itself = sum(o.itself is not None and o.returned == o.itself for o in items)
    return {
        "queries": len(items),
        "false_matches": false,
        "false_match_rate": rate(false, len(items)),
        "found_itself": found_itself,
    }


def by_condition(outcomes: Iterable[Outcome]) -> dict[str, dict[str, dict[str, float | int]]]:
    """query_metrics per value of every condition column (e.g. camera → Canon / Droid)."""
    groups: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for outcome in outcomes:
        if outcome.expected is None:
            continue
        for key, value in outcome.conditions:
            groups[key][value].append(outcome)
    return {
        key: {value: query_metrics(items) for value, items in sorted(values.items())}
        for key, values in sorted(groups.items())
    }


def score_histogram(scores: Iterable[float], bins: int = 10) -> list[int]:
    """Counts of scores in ``bins`` equal bins over 0..1 (1.0 falls in the last)."""
    counts = [0] * bins
    for value in scores:
        counts[min(bins - 1, max(0, int(value * bins)))] += 1
    return counts


def threshold_curve(outcomes: Sequence[Outcome], thresholds: Sequence[float]) -> list[dict[str, float | int]]:
    """What each score threshold would keep: recall@1 on photos of targets, wrong identifiers, false matches.

    An answer below the threshold counts as no answer. Only answers the service gave can be kept, so below
    the service's own acceptance threshold the curve is flat.
    """
    real = [o for o in outcomes if o.expected is not None]
    fake = [o for o in outcomes if o.expected is None]
    rows: list[dict[str, float | int]] = []
    for t in thresholds:

        def kept(o: Outcome, t: float = t) -> bool:
            return o.returned is not None and o.score is not None and o.score >= t

        rows.append(
            {
                "threshold": t,
                "recall_at_1": rate(sum(o.correct and kept(o) for o in real), len(real)),
                "wrong": sum(o.wrong and kept(o) for o in real),
                "false_matches": sum(o.wrong and kept(o) for o in fake),
            }
        )
    return rows
