"""Small JPEG previews of stored targets for the web console.

Stored originals passed the AddImage checks once, but a preview is still decoded with the same guards as
any upload (magic bytes, pixel cap from the header before decoding, reduced-size JPEG decode), so a file
that reached the blob store by another route costs no more than a normal one.
"""

from __future__ import annotations

import cv2
import numpy as np

from imagecloud.errors import FileTooLarge, UnsupportedFormat
from imagecloud.vision.decode import _apply_orientation, read_header

_REDUCED_COLOR = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def thumbnail(data: bytes, *, size: int, max_pixels: int, quality: int = 85) -> bytes:
    """A JPEG whose long side is at most ``size`` pixels (never upscaled), EXIF orientation applied."""
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise FileTooLarge(
            f"image is {header.width}x{header.height} pixels, over the limit of {max_pixels:,} pixels"
        )
    if not header.complete:
        raise UnsupportedFormat("truncated image (no end marker)")
    flag = cv2.IMREAD_COLOR
    if header.format == "jpeg":
        long_side = max(header.width, header.height)
        flag = next((f for factor, f in _REDUCED_COLOR if long_side // factor >= size), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        raise UnsupportedFormat("undecodable image")
    image = _apply_orientation(image, header.orientation)
    long_side = max(image.shape[:2])
    if long_side > size:
        f = size / long_side
        dims = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))
        image = cv2.resize(image, dims, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UnsupportedFormat("could not encode preview")
    return bytes(buf.tobytes())
