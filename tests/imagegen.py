"""Synthetic test images: seeded textured "posters", simulated photos of them, degenerate images.

Every poster is deterministic in its seed and distinct from other seeds, richly textured (shapes,
lines, text) the way printed targets are, so recognition tests need no binary fixtures.
"""

from __future__ import annotations

import cv2
import numpy as np

from imagecloud.vision.simulate import SimulatedView, ViewParams, simulate_view

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)
_WORDS = (
    "NEBULA",
    "ORCHID",
    "Quartz",
    "harbor",
    "VELVET",
    "zephyr",
    "Mosaic",
    "LANTERN",
    "fjord",
    "KIWI",
    "Pioneer",
    "ember",
    "Saffron",
    "GLACIER",
    "Tundra",
    "cobalt",
)


def poster(seed: int, width: int = 480, height: int = 640) -> np.ndarray:
    """A colour poster-like image (BGR uint8) unique to ``seed``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (3, 3, 3)).astype(np.uint8)
    img = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(25, 40))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:
            cv2.circle(
                img, (x, y), int(rng.integers(8, width // 5)), color, int(rng.choice([-1, 2, 4])), cv2.LINE_AA
            )
        elif kind == 1:
            x2 = x + int(rng.integers(-width // 3, width // 3))
            y2 = y + int(rng.integers(-height // 3, height // 3))
            cv2.rectangle(img, (x, y), (x2, y2), color, int(rng.choice([-1, 3])), cv2.LINE_AA)
        elif kind == 2:
            pts = rng.integers(0, [width, height], (int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
        else:
            cv2.line(
                img,
                (x, y),
                (int(rng.integers(0, width)), int(rng.integers(0, height))),
                color,
                int(rng.integers(1, 5)),
                cv2.LINE_AA,
            )
    for _ in range(int(rng.integers(8, 14))):
        text = " ".join(rng.choice(_WORDS, int(rng.integers(1, 3))))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        org = (int(rng.integers(0, width * 3 // 4)), int(rng.integers(20, height)))
        cv2.putText(
            img,
            text,
            org,
            int(rng.choice(_FONTS)),
            float(rng.uniform(0.5, 1.6)),
            color,
            int(rng.integers(1, 3)),
            cv2.LINE_AA,
        )
    return img


def photo(
    image: np.ndarray,
    seed: int,
    *,
    rotation_deg: float = 0.0,
    tilt_deg: float = 20.0,
    scale: float = 0.75,
    out_size: tuple[int, int] = (800, 600),
) -> SimulatedView:
    """A simulated phone photo of ``image`` (moderate blur/noise/JPEG, textured background)."""
    params = ViewParams(
        tilt_deg=tilt_deg,
        scale=scale,
        rotation_deg=rotation_deg,
        blur_sigma=0.8,
        noise_sigma=3.0,
        brightness=0.95,
        jpeg_quality=85,
        background="texture",
    )
    return simulate_view(image, params, seed=seed, out_size=out_size)


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 92) -> bytes:
    ext = ".jpg" if fmt == "jpeg" else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(ext, image, params)
    assert ok
    return buf.tobytes()


def blank(width: int = 400, height: int = 300, value: int = 200) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def gradient(width: int = 400, height: int = 300) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 120, height, dtype=np.float32)
    g = np.clip(x[None, :] * 0.7 + y[:, None], 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))


def checkerboard(width: int = 480, height: int = 480, square: int = 24) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    g = (((xx // square) + (yy // square)) % 2 * 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))


def tiled(seed: int = 0, width: int = 480, height: int = 480, tile: int = 48) -> np.ndarray:
    """One small textured tile repeated: every feature has many identical twins."""
    t = poster(seed, tile, tile)
    reps = (height // tile + 1, width // tile + 1, 1)
    return np.ascontiguousarray(np.tile(t, reps)[:height, :width])


def noise(seed: int = 0, width: int = 480, height: int = 480) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
