"""Seeded simulated camera views of a flat target.

Used by the AddImage self-test (rating) and by tests and benchmarks: a view is what a phone would
see of the print: perspective tilt, scale, in-plane rotation, defocus blur, sensor noise,
exposure, JPEG compression and a background around the print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ViewParams:
    tilt_deg: float = 25.0  # out-of-plane rotation of the print
    scale: float = 0.7  # print long side / view long side
    rotation_deg: float = 0.0  # in-plane camera roll
    blur_sigma: float = 1.0
    noise_sigma: float = 3.0
    brightness: float = 1.0  # gain
    jpeg_quality: int = 80  # 0 = no compression
    background: str = "texture"  # "texture" | "flat"


@dataclass(frozen=True)
class SimulatedView:
    image: np.ndarray  # uint8, same channels as the input
    homography: np.ndarray  # 3x3 float64 mapping target pixels -> view pixels


def random_params(rng: np.random.Generator, *, strength: float = 1.0) -> ViewParams:
    """Plausible hand-held capture conditions; ``strength`` scales how hard they are."""
    return ViewParams(
        tilt_deg=float(rng.uniform(0, 40) * strength),
        scale=float(rng.uniform(0.45, 0.85)),
        rotation_deg=float(rng.uniform(-180, 180)),
        blur_sigma=float(rng.uniform(0.3, 1.5) * strength),
        noise_sigma=float(rng.uniform(1, 6) * strength),
        brightness=float(rng.uniform(0.7, 1.2)),
        jpeg_quality=int(rng.integers(60, 95)),
        background=str(rng.choice(["texture", "flat"])),
    )


def view_homography(
    width: int, height: int, out_size: tuple[int, int], params: ViewParams, rng: np.random.Generator
) -> np.ndarray:
    """Target -> view homography: tilt about a random axis, then roll, scale and centre."""
    out_w, out_h = out_size
    axis = rng.uniform(0, 2 * math.pi)
    tilt = math.radians(params.tilt_deg)
    # Rotate the print about an in-plane axis and project with a pinhole camera.
    u = np.array([math.cos(axis), math.sin(axis), 0.0])
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    r = np.eye(3) + math.sin(tilt) * k + (1 - math.cos(tilt)) * (k @ k)
    focal = 1.2 * max(width, height)
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    centred = np.hstack([corners - [width / 2, height / 2], np.zeros((4, 1))])
    cam = centred @ r.T + [0, 0, focal * 1.0]
    proj = cam[:, :2] * (focal / cam[:, 2:3])
    roll = math.radians(params.rotation_deg)
    rot = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    proj = proj @ rot.T
    extent = proj.max(axis=0) - proj.min(axis=0)
    fit = params.scale * min(out_w / extent[0], out_h / extent[1])
    proj = (proj - (proj.max(axis=0) + proj.min(axis=0)) / 2) * fit + [out_w / 2, out_h / 2]
    return np.asarray(
        cv2.getPerspectiveTransform(corners.astype(np.float32), proj.astype(np.float32)), dtype=np.float64
    )


def simulate_view(
    image: np.ndarray,
    params: ViewParams,
    seed: int,
    out_size: tuple[int, int] | None = None,
    background_image: np.ndarray | None = None,
) -> SimulatedView:
    """One view of ``image``; ``background_image`` (a real photo) replaces the synthetic background."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    if out_size is None:
        out_size = (w, h)
    H = view_homography(w, h, out_size, params, rng)
    channels = image.shape[2] if image.ndim == 3 else 0
    if background_image is not None:
        background = _photo_background(background_image, out_size, channels)
    else:
        background = _background(rng, out_size, channels, params.background)
    warped = cv2.warpPerspective(image, H, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, out_size, flags=cv2.INTER_LINEAR)
    alpha = mask.astype(np.float32) / 255.0
    if image.ndim == 3:
        alpha = alpha[:, :, None]
    out = warped.astype(np.float32) * alpha + background.astype(np.float32) * (1 - alpha)
    if params.blur_sigma > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma)
    out = out * params.brightness
    if params.noise_sigma > 0:
        out = out + rng.normal(0, params.noise_sigma, out.shape).astype(np.float32)
    view = np.clip(out, 0, 255).astype(np.uint8)
    if params.jpeg_quality > 0:
        ok, enc = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        if ok:
            flag = cv2.IMREAD_COLOR if view.ndim == 3 else cv2.IMREAD_GRAYSCALE
            decoded = cv2.imdecode(enc, flag)
            if decoded is not None:
                view = np.asarray(decoded, dtype=np.uint8)
    return SimulatedView(image=view, homography=H)


def _photo_background(photo: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """A real photo scaled to cover the view, centre-cropped, with the view's channel count."""
    if channels == 0 and photo.ndim == 3:
        photo = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    elif channels == 3 and photo.ndim == 2:
        photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    w, h = size
    ph, pw = photo.shape[:2]
    cover = max(w / pw, h / ph)
    resized = cv2.resize(photo, (max(w, round(pw * cover)), max(h, round(ph * cover))))
    top = (resized.shape[0] - h) // 2
    left = (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[top : top + h, left : left + w])


def _background(rng: np.random.Generator, size: tuple[int, int], channels: int, kind: str) -> np.ndarray:
    w, h = size
    shape = (h, w, channels) if channels else (h, w)
    if kind == "flat":
        return np.full(shape, rng.integers(40, 220), np.uint8)
    # Low-frequency clutter: smooth blobs, not texture that would out-compete the print for keypoints.
    small = rng.integers(
        0, 256, (max(2, h // 40), max(2, w // 40)) + ((channels,) if channels else ()), dtype=np.uint8
    )
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.asarray(big.reshape(shape), dtype=np.uint8)
