"""``imagecloud bench synthesize``: turn any folder of images into a recognition benchmark.

Each image becomes a target, and for every named capture condition one simulated phone photo of it is
written, so ``imagecloud bench recognition`` can report recall per condition. The output folder has the
same layout as a real data set (``targets/``, ``queries/``, ``queries.csv`` with a ``condition`` column,
optional ``distractors/``); targets and distractors are linked, not copied. When the background photos and
the distractors come from the same folder, every other file is a distractor and the rest are backgrounds,
so no background is also enrolled.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from imagecloud.bench.dataset import IMAGE_SUFFIXES, identifier_for
from imagecloud.vision.simulate import ViewParams, simulate_view

# A moderate hand-held capture; each condition changes one thing from it.
BASE = ViewParams(
    tilt_deg=20,
    scale=0.6,
    rotation_deg=0,
    blur_sigma=0.8,
    noise_sigma=2.0,
    brightness=1.0,
    jpeg_quality=85,
    background="texture",
)


@dataclass(frozen=True)
class Condition:
    name: str
    params: ViewParams
    occlusion: float = 0.0  # fraction of the target covered by another object
    photo_background: bool = False  # a real photo around the print instead of synthetic clutter


CONDITIONS: tuple[Condition, ...] = (
    Condition("baseline", BASE),
    Condition("tilt-45", replace(BASE, tilt_deg=45)),
    Condition("tilt-60", replace(BASE, tilt_deg=60)),
    Condition("scale-30", replace(BASE, scale=0.30)),
    Condition("scale-15", replace(BASE, scale=0.15)),
    Condition("blur-2", replace(BASE, blur_sigma=2.0)),
    Condition("blur-3", replace(BASE, blur_sigma=3.0)),
    Condition("noise-8", replace(BASE, noise_sigma=8.0)),
    Condition("dark", replace(BASE, brightness=0.45)),
    Condition("bright", replace(BASE, brightness=1.6)),
    Condition("jpeg-50", replace(BASE, jpeg_quality=50)),
    Condition("rotate-37", replace(BASE, rotation_deg=37)),
    Condition("rotate-90", replace(BASE, rotation_deg=90)),
    Condition("rotate-180", replace(BASE, rotation_deg=180)),
    Condition("occlusion-25", BASE, occlusion=0.25),
    Condition("occlusion-50", BASE, occlusion=0.50),
    Condition("photo-background", BASE, photo_background=True),
)

# A phone photo after the usual client-side downscale.
VIEW_SIZE = (1024, 768)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def occlude(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Cover ``fraction`` of the target with a band entering from one side, as a hand or another object
    in front of the print would."""
    if fraction <= 0:
        return image
    out = image.copy()
    h, w = out.shape[:2]
    side = int(rng.integers(4))
    colour = rng.integers(0, 256, 3 if out.ndim == 3 else 1).tolist()
    fill = colour if out.ndim == 3 else colour[0]
    if side in (0, 1):  # from the left or right
        band = max(1, round(w * fraction))
        x0 = 0 if side == 0 else w - band
        out[:, x0 : x0 + band] = fill
    else:  # from the top or bottom
        band = max(1, round(h * fraction))
        y0 = 0 if side == 2 else h - band
        out[y0 : y0 + band, :] = fill
    return out


def _link(source: Path, destination: Path, copy: bool) -> None:
    if destination.exists() or destination.is_symlink():
        destination.unlink()
    if copy:
        shutil.copyfile(source, destination)
    else:
        os.symlink(source.resolve(), destination)


def synthesize(
    images: Path,
    out: Path,
    *,
    backgrounds: Path | None = None,
    distractors: Path | None = None,
    conditions: tuple[Condition, ...] = CONDITIONS,
    max_images: int | None = None,
    seed: int = 0,
    copy: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the benchmark folder; returns the number of query photos written."""
    sources = _images(images)[:max_images] if max_images is not None else _images(images)
    if not sources:
        raise ValueError(f"{images} holds no JPEG or PNG files")
    photos = _images(backgrounds) if backgrounds is not None else []
    extra = _images(distractors) if distractors is not None else []
    if photos and extra and set(photos) & set(extra):
        # A background that is also an enrolled distractor is really in the photo: finding it would be
        # right, not a wrong answer. Keep the two sets apart.
        photos = [p for p in photos if p not in set(extra[::2])]
        extra = extra[::2]
    (out / "targets").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    for number, source in enumerate(sources):
        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if image is None:
            continue
        identifier = identifier_for(source)
        _link(source, out / "targets" / f"{identifier}{source.suffix.lower()}", copy)
        for offset, condition in enumerate(conditions):
            view_seed = seed * 1_000_003 + number * 101 + offset
            rng = np.random.default_rng(view_seed)
            background = None
            if condition.photo_background and photos:
                background = cv2.imread(str(photos[int(rng.integers(len(photos)))]), cv2.IMREAD_COLOR)
            target = occlude(image, condition.occlusion, rng)
            view = simulate_view(target, condition.params, view_seed, VIEW_SIZE, background)
            name = f"{identifier}--{condition.name}.jpg"
            cv2.imwrite(str(out / "queries" / name), view.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            rows.append((f"queries/{name}", identifier, condition.name))
        if progress is not None:
            progress(number + 1, len(sources))
    with (out / "queries.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "target", "condition"])
        writer.writerows(rows)
    if extra:
        (out / "distractors").mkdir(exist_ok=True)
        for path in extra:
            _link(path, out / "distractors" / path.name, copy)
    return len(rows)
