"""The distractor corpus of the scale benchmarks: images rendered from real photos, analysed like targets.

A catalogue of a million covers or products is a million *different* images, so a distractor is not a
feature- or word-level variant of another (a ranking sees those as unnaturally alike or unalike) but an image
of its own: one real photo, or a mosaic of two or four, each cropped to 60-100% and recoloured (per-channel
gains and a gamma), the whole resized to a long side of 480-640 px under a slight perspective
(:func:`render`).
The sources are the real photos given to the benchmark (``--source``, e.g. ``../shared/eval/scale-pool``)
and the first half of the dataset's distractor photos; the second half is never rendered, since it is
queried as photos of nothing enrolled.

:class:`Pool` keeps the analysed features of the rendered images in a work folder, appended as they are
made, so a benchmark can stop and resume and later runs reuse them. Distractor ``i`` is always rendered
from the same seed ``i`` over the same sources: a pool only grows.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import faiss
import numpy as np

from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.vision.features import FeatureExtractor
from imagecloud.vision.rating import self_test


def _read_bgr(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read {path}")
    return img


def _recolour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-channel gains and a gamma: a colour change that also changes the grey levels."""
    gains = rng.uniform(0.75, 1.25, 3)
    gamma = rng.uniform(0.7, 1.4)
    out = (img.astype(np.float32) / 255.0) * gains.astype(np.float32)
    out = np.clip(out, 0, 1) ** np.float32(gamma)
    return np.asarray(np.clip(out * 255.0, 0, 255), dtype=np.uint8)


def _crop(img: np.ndarray, rng: np.random.Generator, low: float) -> np.ndarray:
    h, w = img.shape[:2]
    cw, ch = max(8, int(w * rng.uniform(low, 1.0))), max(8, int(h * rng.uniform(low, 1.0)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img[y0 : y0 + ch, x0 : x0 + cw]


def render(photos: Sequence[Path], seed: int) -> np.ndarray:
    """A grey distractor image rendered from 1-4 real photos (long side 480-640 px)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, p=[0.35, 0.25, 0.15, 0.25])  # single, 1x2, 2x1, 2x2
    picks = [photos[int(i)] for i in rng.integers(0, len(photos), [1, 2, 2, 4][kind])]
    tiles = [_recolour(_crop(_read_bgr(p), rng, 0.6), rng) for p in picks]
    tile = 320
    if kind == 0:
        canvas = tiles[0]
    else:
        cols, rows = [(2, 1), (1, 2), (2, 2)][kind - 1]
        canvas = np.zeros((rows * tile, cols * tile, 3), np.uint8)
        for k, t in enumerate(tiles):
            r, c = divmod(k, cols)
            canvas[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = cv2.resize(
                t, (tile, tile), interpolation=cv2.INTER_AREA if min(t.shape[:2]) > tile else cv2.INTER_CUBIC
            )
    h, w = canvas.shape[:2]
    size = rng.uniform(480, 640)
    s = size / max(h, w)
    out_w, out_h = max(32, int(w * s)), max(32, int(h * s))
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    dst += (rng.uniform(-0.06, 0.06, (4, 2)) * np.array([out_w, out_h])).astype(np.float32)
    warped = cv2.warpPerspective(
        canvas,
        cv2.getPerspectiveTransform(src, dst),
        (out_w, out_h),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    return np.asarray(cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


_SOURCES: list[Path] = []  # the photos distractors are rendered from, in each analysing process


def start_worker(paths: list[str]) -> None:
    """Initialise a process that renders distractors from ``paths`` (one OpenCV and FAISS thread each)."""
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    _SOURCES[:] = [Path(p) for p in paths]


def render_distractor(seed: int) -> np.ndarray:
    """Distractor ``seed`` rendered from the sources :func:`start_worker` gave this process."""
    return render(_SOURCES, seed)


def _analyse(seed: int) -> bytes:
    """Features of distractor ``seed``, analysed as AddImage analyses a target of that size (the rating's
    self-test included, whose per-keypoint counts the large-scale index selects descriptors by)."""
    gray = render_distractor(seed)
    extractor = FeatureExtractor(RecognizerSettings().analysis.features)
    feats = extractor.extract(gray, 1.0, gray.shape[1], gray.shape[0])
    if len(feats) == 0:
        return feats.to_bytes()
    return feats.with_repeatability(self_test(gray, feats, 1.0, extractor).counts).to_bytes()


def sources_digest(photos: Sequence[Path]) -> str:
    """What identifies a set of source photos: a digest of their names, in order."""
    return hashlib.sha256("\n".join(p.name for p in photos).encode()).hexdigest()[:16]


class Pool:
    """Feature blobs of the rendered distractors, in one file with an offset table (read by memory map)."""

    def __init__(self, work: Path) -> None:
        self.data_path, self.index_path = work / "pool.bin", work / "pool-offsets.npy"
        self.meta_path = work / "pool.json"
        self.offsets = np.load(self.index_path) if self.index_path.exists() else np.zeros(1, np.int64)
        self._map: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def blob(self, i: int) -> bytes:
        if self._map is None:
            self._map = np.memmap(self.data_path, dtype=np.uint8, mode="r")
        return self._map[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def grow(self, photos: Sequence[Path], n: int, workers: int) -> None:
        """Render and analyse distractors up to ``n`` from ``photos`` (resumes where an earlier run stopped).

        Raises ``ValueError`` when the folder holds distractors made otherwise (other sources, or an older
        corpus): mixing them would make a corpus no run can reproduce.
        """
        if not photos:
            raise ValueError("no source photos to render distractors from")
        made_from = {"render": 2, "sources": len(photos), "digest": sources_digest(photos)}
        have = len(self)
        if have:
            recorded = json.loads(self.meta_path.read_text()) if self.meta_path.exists() else None
            if recorded != made_from:
                raise ValueError(
                    f"{self.data_path.parent} holds {have} distractors made from other sources or by an "
                    "older version; use another work folder"
                )
        if have >= n:
            return
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        self.meta_path.write_text(json.dumps(made_from))
        offsets = list(self.offsets[: have + 1])
        started = time.monotonic()
        with (
            open(self.data_path, "ab") as f,
            multiprocessing.Pool(workers, start_worker, ([str(p) for p in photos],)) as pool,
        ):
            f.truncate(int(offsets[-1]))
            for k, blob in enumerate(pool.imap(_analyse, range(have, n), chunksize=16), 1):
                f.write(blob)
                offsets.append(offsets[-1] + len(blob))
                if k % 2000 == 0 or have + k == n:
                    f.flush()
                    np.save(self.index_path, np.asarray(offsets, np.int64))
                    rate = k / (time.monotonic() - started)
                    print(f"  distractors rendered and analysed: {have + k}/{n} ({rate:.0f}/s)", flush=True)
        self.offsets = np.asarray(offsets, np.int64)
        self._map = None
