"""``imagecloud bench recognition``: enrol a data set, query every photo, report quality and speed.

Enrolment runs on all workers (it is a throughput number); queries run one at a time so their latency is
what one request costs on one core.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from imagecloud.bench import machine
from imagecloud.bench.backends import Backend, Call
from imagecloud.bench.dataset import Dataset, NegativeSet, identifier_for
from imagecloud.bench.metrics import (
    Outcome,
    by_condition,
    distractor_metrics,
    latency_summary,
    query_metrics,
    score_histogram,
    threshold_curve,
)
from imagecloud.errors import ImageCloudError

Progress = Callable[[str, int, int], None]

DISTRACTOR_PREFIX = "distractor."
DISTRACTORS = "distractors"  # the group of the data set's own distractor photos
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def no_progress(_stage: str, _done: int, _total: int) -> None:
    pass


def distractor_identifier(path: Path) -> str:
    return (DISTRACTOR_PREFIX + identifier_for(path))[:50]


def run(
    dataset: Dataset,
    backend: Backend,
    out_dir: Path,
    *,
    workers: int = 2,
    max_distractors: int | None = None,
    distractor_mode: str = "self",
    negatives: Sequence[NegativeSet] = (),
    failure_pictures: bool = True,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Enrol, query, measure, write ``report.json`` + ``report.md`` (+ failure pictures) into ``out_dir``.

    ``distractor_mode`` "self": every distractor is enrolled and queried; a distractor photo that finds
    itself is right, any other identifier is a false match. "split": even-numbered distractors are enrolled,
    odd-numbered ones are queried, so every distractor query shows something truly not enrolled.

    Each of ``negatives`` is enrolled (its ``enrol`` photos) beside the targets and distractors, and its
    query photos must all come back without an identifier; false matches are reported per set.

    ``failure_pictures`` False skips drawing the failures (each re-runs the matching), for sets of weak
    targets that are expected to fail often.
    """
    distractors = dataset.distractors if max_distractors is None else dataset.distractors[:max_distractors]
    if distractor_mode == "split":
        enrolled_distractors, queried_distractors = distractors[::2], distractors[1::2]
    elif distractor_mode == "self":
        enrolled_distractors, queried_distractors = distractors, distractors
    else:
        raise ValueError(f"distractor_mode must be 'self' or 'split', not {distractor_mode!r}")
    enrol_items = [(ident, path) for ident, path in dataset.targets.items()]
    enrol_items += [(distractor_identifier(path), path) for path in enrolled_distractors]
    for negative in negatives:
        enrol_items += [(identifier_for(path), path) for path in negative.enrol]
    paths_by_id = dict(enrol_items)
    enrolled_ids = set(paths_by_id)

    enrol, ratings = _enrol(backend, enrol_items, workers, progress)
    target_levels = {identifier: rating["level"] for identifier, rating in ratings.items()}

    outcomes: list[Outcome] = []
    answers: dict[str, Call] = {}
    photos: list[tuple[Path, str, str | None, tuple[tuple[str, str], ...], str | None, str]] = [
        (
            q.path,
            _name(q.path, dataset.root),
            q.target,
            _conditions(q.conditions, target_levels, q.target),
            None,
            "",
        )
        for q in dataset.queries
    ]
    for path in queried_distractors:
        own = distractor_identifier(path)
        name = _name(path, dataset.root)
        photos.append((path, name, None, (), own if own in enrolled_ids else None, DISTRACTORS))
    for negative in negatives:
        for path in negative.queries:
            name = f"{negative.name}/{_name(path, negative.root)}"
            photos.append((path, name, None, (), None, negative.name))
    for done, (path, name, expected, conditions, itself, group) in enumerate(photos, 1):
        call = backend.find(path.read_bytes())
        returned = call.body.get("identifier") if call.returncode == 0 else None
        score = call.body.get("score") if returned is not None else None
        outcomes.append(Outcome(name, expected, returned, call.seconds, conditions, itself, group, score))
        answers[name] = call
        progress("query", done, len(photos))

    real = [o for o in outcomes if o.expected is not None]
    fake = [o for o in outcomes if o.expected is None]
    failures = [o for o in real if not o.correct] + [o for o in fake if o.wrong]
    failure_dir = out_dir / "failures"
    query_paths = {name: path for path, name, *_ in photos}
    for outcome in failures if failure_pictures else []:
        call = answers[outcome.query]
        _failure_picture(query_paths[outcome.query], paths_by_id, outcome, call, failure_dir)
    groups = [DISTRACTORS] + [negative.name for negative in negatives]

    report: dict[str, Any] = {
        "dataset": dataset.name,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine.describe(),
        "distractor_mode": distractor_mode,
        "enrolled": {
            "targets": len(dataset.targets),
            "distractors": len(enrolled_distractors),
            **enrol,
        },
        "queries": query_metrics(real),
        "distractor_queries": distractor_metrics(fake),
        "negative_sets": {
            group: {
                **distractor_metrics(o for o in fake if o.group == group),
                "enrolled": next((len(n.enrol) for n in negatives if n.name == group), 0),
                "find_latency": latency_summary([o.seconds for o in fake if o.group == group]),
            }
            for group in groups
        },
        "scores": {
            "bins": [round(i / 10, 1) for i in range(10)],
            "correct": score_histogram(o.score for o in real if o.correct and o.score is not None),
            "wrong": score_histogram(o.score for o in outcomes if o.wrong and o.score is not None),
        },
        "threshold_curve": threshold_curve(outcomes, THRESHOLDS),
        "by_condition": by_condition(real),
        # What AddImage said of each target of the data set (not of distractors): level and matchratio.
        "targets": {
            identifier: ratings[identifier] for identifier in dataset.targets if identifier in ratings
        },
        "find_latency": latency_summary([o.seconds for o in outcomes]),
        "find_latency_real_queries": latency_summary([o.seconds for o in real]),
        "find_latency_distractor_queries": latency_summary([o.seconds for o in fake]),
        "find_returncodes": _count_codes(answers.values()),
        "failures": [
            {
                **asdict(o),
                "returncode": answers[o.query].returncode,
            }
            for o in failures
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    return report


def _conditions(given: dict[str, str], levels: dict[str, int], target: str) -> tuple[tuple[str, str], ...]:
    """A photo's conditions plus its target's AddImage level: recall per level shows what it predicts."""
    level = levels.get(target)
    extra = {"target level": str(level) if level is not None else "not enrolled"}
    return tuple(sorted({**given, **extra}.items()))


def _enrol(
    backend: Backend, items: list[tuple[str, Path]], workers: int, progress: Progress
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Enrolment figures, and the level and matchratio of every identifier that was accepted."""
    done = 0
    calls: list[Call] = []

    def add(item: tuple[str, Path]) -> Call:
        identifier, path = item
        return backend.add(identifier, path.read_bytes())

    started = time.perf_counter()
    by_identifier: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for (identifier, _), call in zip(items, pool.map(add, items), strict=True):
            calls.append(call)
            if call.returncode == 0:
                by_identifier[identifier] = {
                    "level": int(call.body["level"]),
                    "matchratio": float(call.body["matchratio"]),
                }
            done += 1
            progress("enrol", done, len(items))
    wall = time.perf_counter() - started
    levels = [int(c.body["level"]) for c in calls if c.returncode == 0]
    figures = {
        "workers": workers,
        "accepted": sum(c.returncode == 0 for c in calls),
        "returncodes": _count_codes(calls),
        "levels": {str(level): levels.count(level) for level in range(1, 6)},
        "wall_seconds": round(wall, 2),
        "targets_per_second": round(len(items) / wall, 2) if wall else None,
        "add_latency": latency_summary([c.seconds for c in calls]),
    }
    return figures, by_identifier


def _count_codes(calls: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        key = str(call.returncode)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _name(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def _failure_picture(
    query_path: Path, paths_by_id: dict[str, Path], outcome: Outcome, call: Call, folder: Path
) -> None:
    """Query | expected target | returned target, side by side, so a person can see why it failed."""
    height = 360
    query = cv2.imread(str(query_path), cv2.IMREAD_COLOR)
    if query is None:
        return
    corners = call.body.get("corners")
    if corners:
        polygon = np.array(corners, dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(query, [polygon], True, (0, 0, 255), max(2, query.shape[1] // 200))
    query_label = f"query {Path(outcome.query).name}"
    returned = None
    if outcome.returned is not None and outcome.returned in paths_by_id:
        returned_path = paths_by_id[outcome.returned]
        returned = cv2.imread(str(returned_path), cv2.IMREAD_COLOR)
        if returned is not None:
            # Where the returned target was seen: each inlier correspondence as one coloured dot on both.
            pairs = _inlier_pairs(query_path.read_bytes(), returned_path.read_bytes())
            for number, (photo_point, target_point) in enumerate(pairs):
                hue = np.array([[[number * 37 % 180, 255, 255]]], dtype=np.uint8)
                color = tuple(int(c) for c in cv2.cvtColor(hue, cv2.COLOR_HSV2BGR)[0, 0])
                for image, point in ((query, photo_point), (returned, target_point)):
                    radius = max(3, image.shape[1] // 160)
                    cv2.circle(image, tuple(int(v) for v in point), radius, color, -1, cv2.LINE_AA)
            query_label += f" ({len(pairs)} inliers)"
    panels = [_panel(query, query_label, height)]
    if outcome.expected is not None and outcome.expected in paths_by_id:
        expected = cv2.imread(str(paths_by_id[outcome.expected]), cv2.IMREAD_COLOR)
        if expected is not None:
            panels.append(_panel(expected, f"expected {outcome.expected}", height))
    if returned is not None:
        panels.append(_panel(returned, f"returned {outcome.returned}", height))
    folder.mkdir(parents=True, exist_ok=True)
    name = (outcome.group + "." if outcome.group else "") + Path(outcome.query).stem + ".png"
    cv2.imwrite(str(folder / name), np.hstack(panels))


def _inlier_pairs(photo: bytes, target: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """The photo and target points the service's verification pairs up, re-computed here for a picture."""
    from imagecloud.service.recognizer import Recognizer
    from imagecloud.vision.features import Features
    from imagecloud.vision.verify import verify

    recognizer = Recognizer()
    try:
        query = recognizer.analyse_query(photo)
        stored = Features.from_bytes(recognizer.analyse_target(target).features_blob)
    except ImageCloudError:
        return []
    geometry = verify(query.features, stored, recognizer.settings.search.verify)
    if geometry is None:
        return []
    return list(
        zip(query.features.points[geometry.query_idx], stored.points[geometry.target_idx], strict=True)
    )


def _panel(image: np.ndarray, label: str, height: int) -> np.ndarray:
    scale = height / image.shape[0]
    resized = cv2.resize(image, (max(1, round(image.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    framed = cv2.copyMakeBorder(resized, 28, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(framed, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return framed


def _blank_none(value: Any) -> str:
    return "" if value is None else str(value)


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%"


def markdown(report: dict[str, Any]) -> str:
    q = report["queries"]
    d = report["distractor_queries"]
    e = report["enrolled"]
    lat = report["find_latency"]
    lat_real = report["find_latency_real_queries"]
    lat_fake = report["find_latency_distractor_queries"]
    add = e["add_latency"]
    m = report["machine"]
    lines = [
        f"# Recognition benchmark: {report['dataset']}",
        "",
        f"Run {report['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"Python {m['python']}, OpenCV {m['opencv']}.",
        "",
        f"Enrolled {e['accepted']} of {e['targets']} targets + {e['distractors']} distractors "
        f"(result codes {e['returncodes']}), levels {e['levels']}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| recall@1 ({q['queries']} real photos) | {_pct(q['recall_at_1'])} ({q['correct']}) |",
        f"| wrong identifier | {_pct(q['wrong_rate'])} ({q['wrong']}) |",
        f"| no answer | {_pct(q['no_answer_rate'])} ({q['no_answer']}) |",
        f"| false matches ({d['queries']} distractor photos, mode {report['distractor_mode']}) | "
        f"{_pct(d['false_match_rate'])} ({d['false_matches']}) |",
        f"| distractor photos that found themselves | {d['found_itself']} |",
        f"| FindImage p50 / p95 / p99, all photos (server-side, one at a time) | {lat['p50_ms']} / "
        f"{lat['p95_ms']} / {lat['p99_ms']} ms |",
        f"| FindImage p50 / p95, real photos | {lat_real['p50_ms']} / {lat_real['p95_ms']} ms |",
        f"| FindImage p50 / p95, distractor photos | {lat_fake['p50_ms']} / {lat_fake['p95_ms']} ms |",
        f"| AddImage p50 / p95 ({e['workers']} workers) | {add['p50_ms']} / {add['p95_ms']} ms |",
        f"| AddImage throughput | {e['targets_per_second']} targets/s |",
        "",
    ]
    lines += [
        "## Photos of nothing enrolled, per set",
        "",
        "| set | enrolled beside the targets | photos | false matches | FindImage p50 / p95 |",
        "|---|---|---|---|---|",
    ]
    for group, n in report["negative_sets"].items():
        nl = n["find_latency"]
        lines.append(
            f"| {group} | {n['enrolled']} | {n['queries']} | {n['false_matches']} "
            f"({_pct(n['false_match_rate'])}) | {nl['p50_ms']} / {nl['p95_ms']} ms |"
        )
    sc = report["scores"]
    lines += [
        "",
        "## Scores of the answers",
        "",
        "| score from | " + " | ".join(f"{b:.1f}" for b in sc["bins"]) + " |",
        "|---" * (len(sc["bins"]) + 1) + "|",
        "| right identifier | " + " | ".join(str(c) for c in sc["correct"]) + " |",
        "| wrong identifier or false match | " + " | ".join(str(c) for c in sc["wrong"]) + " |",
        "",
        "| keep answers with score ≥ | recall@1 | wrong | false matches |",
        "|---|---|---|---|",
    ]
    for row in report["threshold_curve"]:
        lines.append(
            f"| {row['threshold']:.1f} | {_pct(row['recall_at_1'])} | {row['wrong']} | "
            f"{row['false_matches']} |"
        )
    lines.append("")
    for key, values in report["by_condition"].items():
        lines += [
            f"## By {key}",
            "",
            "| value | photos | recall@1 | wrong | no answer |",
            "|---|---|---|---|---|",
        ]
        for value, metrics in values.items():
            lines.append(
                f"| {value} | {metrics['queries']} | {_pct(metrics['recall_at_1'])} | {metrics['wrong']} | "
                f"{metrics['no_answer']} |"
            )
        lines.append("")
    if report["failures"]:
        lines += [
            "## Failures",
            "",
            "| query | expected | returned | score | code |",
            "|---|---|---|---|---|",
        ]
        for failure in report["failures"]:
            lines.append(
                f"| {failure['query']} | {failure['expected'] or '(nothing enrolled)'} | "
                f"{failure['returned'] or '(none)'} | {_blank_none(failure['score'])} | "
                f"{failure['returncode']} |"
            )
        lines += [
            "",
            "Pictures of each failure are written to `failures/` beside this report (not committed).",
        ]
    return "\n".join(lines) + "\n"
