"""Small JPEG previews of stored targets for the web console.

Stored originals passed the AddImage checks once, but a preview is still decoded with the same guards as
any upload (magic bytes, pixel cap from the header before decoding, reduced-size JPEG decode), so a file
that reached the blob store by another route costs no more than a normal one.
"""

from __future__ import annotations

import cv2
import numpy as np

from imagecloud.errors import FileTooLarge, ImageCloudError, UnsupportedFormat
from imagecloud.vision.decode import _apply_orientation, read_header

_REDUCED_COLOR = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


# The sizes a preview may have (requests snap to the nearest), and those made when a target is stored:
# the console's grid and detail view, so that showing a channel never renders anything.
SIZES = (64, 128, 256, 512, 1024)
PRERENDERED = (256, 1024)


def nearest_size(size: int) -> int:
    return min(SIZES, key=lambda allowed: abs(allowed - size))


def stored_previews(data: bytes, *, max_pixels: int) -> dict[int, bytes]:
    """The previews kept with a target (size → JPEG); none if they cannot be made from an image that the
    analysis accepted (they are then made when first asked for)."""
    try:
        return thumbnails(data, sizes=PRERENDERED, max_pixels=max_pixels)
    except ImageCloudError:
        return {}


def thumbnail(data: bytes, *, size: int, max_pixels: int, quality: int = 85) -> bytes:
    """A JPEG whose long side is at most ``size`` pixels (never upscaled), EXIF orientation applied."""
    return thumbnails(data, sizes=(size,), max_pixels=max_pixels, quality=quality)[size]


def thumbnails(
    data: bytes, *, sizes: tuple[int, ...], max_pixels: int, quality: int = 85
) -> dict[int, bytes]:
    """One JPEG per size in ``sizes``, from a single decode (at the reduced scale the largest allows)."""
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise FileTooLarge(
            f"image is {header.width}x{header.height} pixels, over the limit of {max_pixels:,} pixels"
        )
    if not header.complete:
        raise UnsupportedFormat("truncated image (no end marker)")
    largest = max(sizes)
    flag = cv2.IMREAD_COLOR
    if header.format == "jpeg":
        long_side = max(header.width, header.height)
        flag = next((f for factor, f in _REDUCED_COLOR if long_side // factor >= largest), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        raise UnsupportedFormat("undecodable image")
    image = _apply_orientation(image, header.orientation)
    rendered: dict[int, bytes] = {}
    # Largest first, each one scaled down from the previous: every step is a small, cheap resize.
    for size in sorted(set(sizes), reverse=True):
        long_side = max(image.shape[:2])
        if long_side > size:
            f = size / long_side
            dims = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
            # Area averaging where it matters (2x and more); below that it costs ~10x a bilinear resize
            # (non-integer factors) for no visible difference.
            smooth = cv2.INTER_AREA if long_side >= 2 * size else cv2.INTER_LINEAR
            image = cv2.resize(image, dims, interpolation=smooth)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise UnsupportedFormat("could not encode preview")
        rendered[size] = bytes(buf.tobytes())
    return rendered
