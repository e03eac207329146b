"""Hostile and degenerate uploads the HTTP tests need beyond ``tests.imagegen``'s targets and photos."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from tests import imagegen


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real, complete single-colour PNG with ``width`` x ``height`` pixels, only a few KiB on the wire.

    One bit per pixel keeps building it cheap; a decoder would still have to allocate every pixel.
    """
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte "none", then all-black pixels
    packer = zlib.compressobj(9)
    compressed = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", compressed)
        + _png_chunk(b"IEND", b"")
    )


def blank(fmt: str = "png") -> bytes:
    """A valid image with no texture at all."""
    return imagegen.encode(imagegen.blank(640, 480), fmt)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first part of an encoded image, as a dropped connection would leave it."""
    return data[: int(len(data) * keep)]


def oversize_garbage(size: int) -> bytes:
    """``size`` bytes that are not an image at all (a decoder would answer 20007 if it got that far)."""
    return (b"not an image, just filler. " * (size // 27 + 1))[:size]


TEXT_FILE = b"this is a text file, whatever its name says\n"


def photo(
    target: np.ndarray,
    seed: int,
    *,
    rotation_deg: float = 20.0,
    tilt_deg: float = 20.0,
    scale: float = 0.6,
    size: tuple[int, int] = (800, 600),
) -> tuple[bytes, np.ndarray]:
    """A simulated camera photo of ``target`` (JPEG) and the target-to-photo homography that made it."""
    view = imagegen.photo(
        target, seed, rotation_deg=rotation_deg, tilt_deg=tilt_deg, scale=scale, out_size=size
    )
    return imagegen.encode(view.image), view.homography


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 40) -> np.ndarray:
    """One photo showing two targets next to each other on a plain background."""
    height = max(left.shape[0], right.shape[0]) + 2 * gap
    width = left.shape[1] + right.shape[1] + 3 * gap
    canvas = np.full((height, width, 3), 128, np.uint8)
    canvas[gap : gap + left.shape[0], gap : gap + left.shape[1]] = left
    x = 2 * gap + left.shape[1]
    canvas[gap : gap + right.shape[0], x : x + right.shape[1]] = right
    return canvas


def project(homography: np.ndarray, width: int, height: int) -> np.ndarray:
    """Where a ``width`` x ``height`` target's corners land, clockwise from its top-left."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64).reshape(-1, 1, 2)
    return np.asarray(cv2.perspectiveTransform(corners, homography).reshape(4, 2))


def phone_photo(target: np.ndarray, seed: int) -> bytes:
    """A 12-megapixel JPEG of ``target`` as a current phone saves it: 4032x3024 with sensor noise, 3-8 MB."""
    view = imagegen.photo(target, seed, rotation_deg=10.0, tilt_deg=15.0, scale=0.6, out_size=(4032, 3024))
    rng = np.random.default_rng(seed)
    noisy = view.image.astype(np.int16) + rng.normal(0, 8, view.image.shape).astype(np.int16)
    return imagegen.encode(np.clip(noisy, 0, 255).astype(np.uint8), "jpeg", quality=92)
