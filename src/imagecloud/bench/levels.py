"""``imagecloud bench levels``: does the AddImage level predict how often a target is found?

A folder of good images (covers, posters) rates almost all of them 3 to 5, so a table of recall per level
says little about levels 1 and 2. ``grade`` therefore adds weakened variants of every image, the kinds of
print that really recognise badly: blurred, washed out, posterised, shrunk onto a blank page, a repeated
tile, a low-resolution copy, a flat page with a few words. The graded targets are photographed under the
synthetic capture conditions (:mod:`imagecloud.bench.synthetic`), enrolled and searched in-process, and the
share of photos found is reported per level.

Versions of one image would find each other, so they are enrolled in separate rounds (a fresh service
each, with the same distractors). The images are split into two halves by source (even- and odd-numbered
sources, with all their variants), so a rating whose thresholds were chosen on one half can be checked on
the other.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from imagecloud.bench import machine, recognition
from imagecloud.bench.backends import InProcessBackend
from imagecloud.bench.dataset import IMAGE_SUFFIXES, identifier_for, load_dataset
from imagecloud.bench.synthetic import CONDITIONS, Condition, synthesize
from imagecloud.errors import FeatureInsufficient
from imagecloud.service.recognizer import Recognizer

# Sources are brought to this long side before they are weakened, so a strength means the same on every
# image (it is also the long side targets are analysed at).
LONG_SIDE = 640
HALVES = ("fit", "check")


def _fit(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    f = LONG_SIDE / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Strengths spread evenly in ratio: as many mild as severe copies."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An out-of-focus or heavily smoothed print: the fine detail ORB relies on is gone."""
    return np.asarray(cv2.GaussianBlur(image, (0, 0), _log_uniform(rng, 2.0, 14.0)), np.uint8)


def _washed(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Low contrast, as a pale print or a faded photo: corners fall under the detector's threshold."""
    gain = _log_uniform(rng, 0.02, 0.3)
    mean = image.reshape(-1, image.shape[2]).mean(axis=0)
    return np.asarray(np.clip((image.astype(np.float32) - mean) * gain + mean, 0, 255), np.uint8)


def _posterised(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smoothed, then a few flat tones: large plain areas with sharp but few corners."""
    smooth = cv2.GaussianBlur(image, (0, 0), _log_uniform(rng, 2.0, 8.0)).astype(np.float32)
    steps = int(rng.integers(2, 5))
    return np.asarray(np.round(smooth / 255 * (steps - 1)) * (255 / (steps - 1)), np.uint8)


def _small(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small logo on a blank page: little of the target carries any detail."""
    h, w = image.shape[:2]
    f = _log_uniform(rng, 0.06, 0.35)
    logo = cv2.resize(image, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    page = np.full_like(image, int(rng.integers(200, 256)))
    y = int(rng.integers(0, h - logo.shape[0] + 1))
    x = int(rng.integers(0, w - logo.shape[1] + 1))
    page[y : y + logo.shape[0], x : x + logo.shape[1]] = logo
    return page


def _tiled(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pattern repeated over the page (wallpaper, packaging): every feature has look-alikes."""
    h, w = image.shape[:2]
    side = int(rng.integers(min(h, w) // 10, min(h, w) // 2))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    tile = image[y : y + side, x : x + side]
    reps = (-(-h // side), -(-w // side), 1)
    return np.ascontiguousarray(np.tile(tile, reps)[:h, :w])


def _low_resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small copy blown up: soft, blocky detail."""
    h, w = image.shape[:2]
    f = _log_uniform(rng, 0.04, 0.25)
    tiny = cv2.resize(image, (max(4, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(tiny, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


_WORDS = ("SALE", "OPEN", "NEW", "MENU", "CAFE", "EXPO", "2025", "INFO", "SHOP", "GIFT", "TOUR", "ART")


def _text(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flat page in the image's colour with a few words on it."""
    h, w = image.shape[:2]
    colour = image.reshape(-1, image.shape[2]).mean(axis=0)
    page = np.empty_like(image)
    page[:] = np.clip(colour, 0, 255).astype(np.uint8)
    ink = tuple(int(c) for c in (255 - colour if colour.mean() < 128 else colour * 0.2))
    for line in range(int(rng.integers(1, 4))):
        words = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 3))))
        size = float(rng.uniform(0.5, 2.0))
        y = int(h * (line + 1) / 4 + rng.integers(-20, 21))
        x = int(rng.integers(10, max(11, w // 4)))
        cv2.putText(
            page, words, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, ink, max(1, round(size * 2)), cv2.LINE_AA
        )
    return page


Weakening = Callable[[np.ndarray, np.random.Generator], np.ndarray]
WEAKENINGS: tuple[tuple[str, Weakening], ...] = (
    ("blur", _blur),
    ("washed", _washed),
    ("posterised", _posterised),
    ("small", _small),
    ("tiled", _tiled),
    ("lowres", _low_resolution),
    ("text", _text),
)


@dataclass(frozen=True)
class GradedTarget:
    identifier: str
    source: str  # identifier of the image it was made from
    kind: str  # "original" or the weakening's name
    half: str  # one of HALVES
    round: int  # variants of one image are enrolled in different rounds: they would find each other


def grade(
    images: Path,
    out: Path,
    *,
    variants: int = 3,
    max_images: int | None = None,
    skip_images: int = 0,
    seed: int = 0,
) -> list[GradedTarget]:
    """Write every image of ``images`` (at LONG_SIDE) and ``variants`` weakened copies of it.

    Round ``r`` (folder ``out/round-r``) holds the r-th version of every image: the originals in round 0,
    one weakening of each in every later round. The weakenings are taken in turn, so each kind is made about
    equally often and every round mixes them; their strengths are seeded.
    """
    sources = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    sources = sources[skip_images:]
    if max_images is not None:
        sources = sources[:max_images]
    if not sources:
        raise ValueError(f"{images} holds no JPEG or PNG files")
    for r in range(variants + 1):
        (out / f"round-{r}").mkdir(parents=True, exist_ok=True)
    made: list[GradedTarget] = []
    turn = 0
    for number, path in enumerate(sources):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        image = _fit(image)
        source = identifier_for(path)[:36]
        half = HALVES[number % 2]
        rng = np.random.default_rng([seed, number])
        kinds: list[tuple[str, np.ndarray]] = [("original", image)]
        for _ in range(variants):
            name, weaken = WEAKENINGS[turn % len(WEAKENINGS)]
            turn += 1
            kinds.append((name, weaken(image, rng)))
        for r, (kind, picture) in enumerate(kinds):
            # "_", not ".": a data set's identifiers are file stems, and a dot would start a suffix.
            identifier = f"{source}_{kind}"
            cv2.imwrite(
                str(out / f"round-{r}" / f"{identifier}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
            made.append(GradedTarget(identifier, source, kind, half, r))
    return made


def run(
    images: Path,
    work: Path,
    out: Path,
    *,
    variants: int = 3,
    max_images: int | None = None,
    skip_images: int = 0,
    backgrounds: Path | None = None,
    distractors: Path | None = None,
    max_distractors: int | None = None,
    conditions: tuple[Condition, ...] = CONDITIONS,
    seed: int = 0,
    rerate: bool = False,
    progress: recognition.Progress = recognition.no_progress,
) -> dict[str, Any]:
    """Grade, photograph, enrol and search round by round; write ``report.json`` and ``report.md`` to ``out``.

    Each round is a fresh service with that round's targets and the same distractors. Targets AddImage
    rejects are left out before they are photographed. With ``rerate`` the targets and search results of an
    earlier run in ``work`` are kept and only the levels are computed again: which photos are found does not
    depend on the rating, so a changed rating can be checked in minutes; only the photos of ``conditions``
    (those the earlier run took) are counted.
    """
    if not rerate:
        if work.exists():
            shutil.rmtree(work)
        targets = grade(
            images,
            work / "targets",
            variants=variants,
            max_images=max_images,
            skip_images=skip_images,
            seed=seed,
        )
        (work / "targets.json").write_text(json.dumps([asdict(t) for t in targets], indent=1) + "\n")
    else:
        try:
            targets = [GradedTarget(**t) for t in json.loads((work / "targets.json").read_text())]
        except FileNotFoundError:
            raise ValueError(f"{work} holds no earlier run to re-rate") from None
        variants = max(t.round for t in targets)
    ratings = _rate(work / "targets", targets, progress)
    searched_rounds: list[dict[str, Any]] = []
    for r in range(variants + 1):
        report_path = work / f"recognition-{r}" / "report.json"
        accepted = [t for t in targets if t.round == r and t.identifier in ratings]
        if not rerate and accepted:
            _search(work, r, accepted, backgrounds, distractors, max_distractors, conditions, seed, progress)
        if report_path.exists():  # a round whose every target was rejected searched nothing
            searched_rounds.append(json.loads(report_path.read_text()))
    if not searched_rounds:
        raise ValueError("every target was rejected: nothing was searched")
    # Re-rating may count a subset of the conditions the photos were taken under.
    taken = sorted(searched_rounds[0]["by_condition"].get("condition", {}))
    counted = [c for c in taken if c in {c.name for c in conditions}] if rerate else taken
    missed: dict[str, int] = {}
    for result in searched_rounds:
        for failure in result["failures"]:
            condition = dict(failure["conditions"]).get("condition")
            if failure["expected"] is not None and condition in counted:
                missed[failure["expected"]] = missed.get(failure["expected"], 0) + 1
    photos = len(counted)
    # A target a changed rating accepts but the earlier run did not enrol has no photos to count.
    searched = {identifier for result in searched_rounds for identifier in result["targets"]}
    rows = [
        {
            "identifier": t.identifier,
            "source": t.source,
            "kind": t.kind,
            "half": t.half,
            "level": ratings[t.identifier][0] if t.identifier in ratings else None,
            "matchratio": ratings[t.identifier][1] if t.identifier in ratings else None,
            "photos": photos if t.identifier in ratings and t.identifier in searched else 0,
            "found": photos - missed.get(t.identifier, 0)
            if t.identifier in ratings and t.identifier in searched
            else 0,
        }
        for t in targets
    ]
    report: dict[str, Any] = {
        "date": searched_rounds[0]["date"],
        "machine": machine.describe(),
        "sources": len({t.source for t in targets}),
        "variants": variants,
        "conditions": counted,
        "distractors_enrolled": searched_rounds[0]["enrolled"]["distractors"],
        "false_matches": sum(r["distractor_queries"]["false_matches"] for r in searched_rounds),
        "wrong": sum(r["queries"]["wrong"] for r in searched_rounds),
        "table": {name: level_table(rows, name) for name in ("all", *HALVES)},
        "targets": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def _rate(
    folder: Path, targets: Sequence[GradedTarget], progress: recognition.Progress
) -> dict[str, tuple[int, float]]:
    """(level, matchratio) of every target AddImage would accept, as AddImage computes them."""
    recognizer = Recognizer()
    ratings: dict[str, tuple[int, float]] = {}
    for done, t in enumerate(targets, 1):
        data = (folder / f"round-{t.round}" / f"{t.identifier}.jpg").read_bytes()
        try:
            analysis = recognizer.analyse_target(data)
        except FeatureInsufficient:
            pass
        else:
            ratings[t.identifier] = (analysis.level, analysis.matchratio)
        progress("rate", done, len(targets))
    return ratings


def _search(
    work: Path,
    r: int,
    accepted: Sequence[GradedTarget],
    backgrounds: Path | None,
    distractors: Path | None,
    max_distractors: int | None,
    conditions: tuple[Condition, ...],
    seed: int,
    progress: recognition.Progress,
) -> None:
    """Photograph round ``r``'s accepted targets, enrol them beside the distractors and search every photo.

    Rejected targets are left out: AddImage would not store them, so there is nothing to find.
    """
    folder = work / f"set-{r}"
    chosen = work / f"accepted-{r}"
    chosen.mkdir(parents=True, exist_ok=True)
    for t in accepted:
        link = chosen / f"{t.identifier}.jpg"
        if not link.exists():
            link.symlink_to((work / "targets" / f"round-{r}" / f"{t.identifier}.jpg").resolve())
    synthesize(
        chosen,
        folder,
        backgrounds=backgrounds,
        distractors=distractors,
        conditions=conditions,
        seed=seed,
        progress=lambda done, total: progress(f"round {r}: photograph", done, total),
    )
    backend = InProcessBackend()
    try:
        recognition.run(
            load_dataset(folder),
            backend,
            work / f"recognition-{r}",
            max_distractors=max_distractors,
            distractor_mode="split",
            failure_pictures=False,
            progress=lambda stage, done, total: progress(f"round {r}: {stage}", done, total),
        )
    finally:
        backend.close()


def level_table(rows: Sequence[dict[str, Any]], half: str = "all") -> list[dict[str, Any]]:
    """Per level (and "rejected"): targets, photos of them, photos found; for one half or all targets."""
    chosen = [r for r in rows if half == "all" or r["half"] == half]
    table: list[dict[str, Any]] = []
    for level in (5, 4, 3, 2, 1, None):
        group = [r for r in chosen if r["level"] == level]
        photos = sum(r["photos"] for r in group)
        found = sum(r["found"] for r in group)
        table.append(
            {
                "level": "rejected" if level is None else level,
                "targets": len(group),
                "photos": photos,
                "found": found,
                "found_share": round(found / photos, 4) if photos and level is not None else None,
            }
        )
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    tables = report["table"]
    lines = [
        "# Does the level predict recognition?",
        "",
        f"Run {report['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
        f"OpenCV {m['opencv']}.",
        "",
        f"{report['sources']} source images, each with {report['variants']} weakened variants; one simulated "
        f"photo per target and condition ({len(report['conditions'])}: {', '.join(report['conditions'])}); "
        f"{report['distractors_enrolled']} distractors enrolled beside them. Wrong identifiers: "
        f"{report['wrong']}; false matches on distractor photos: {report['false_matches']}.",
        "",
        "| level | targets | photos | found | "
        + " | ".join(f"{h} half: targets, found" for h in HALVES)
        + " |",
        "|---|---|---|---|" + "---|" * len(HALVES),
    ]
    for index, row in enumerate(tables["all"]):
        halves = [tables[h][index] for h in HALVES]
        lines.append(
            f"| {row['level']} | {row['targets']} | {row['photos']} | {_share(row['found_share'])} | "
            + " | ".join(f"{h['targets']}, {_share(h['found_share'])}" for h in halves)
            + " |"
        )
    lines += [
        "",
        "Rejected targets (AddImage answered 20013) are not enrolled; their photos are not counted.",
        "",
    ]
    kinds = sorted({r["kind"] for r in report["targets"]})
    lines += [
        "## Levels by kind of target",
        "",
        "| kind | " + " | ".join(str(v) for v in (5, 4, 3, 2, 1)) + " | rejected |",
    ]
    lines.append("|---" * 7 + "|")
    for kind in kinds:
        of_kind = [r for r in report["targets"] if r["kind"] == kind]
        counts = [sum(r["level"] == level for r in of_kind) for level in (5, 4, 3, 2, 1, None)]
        lines.append(f"| {kind} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(lines) + "\n"
