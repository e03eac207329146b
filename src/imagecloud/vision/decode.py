"""Safe image decoding: sniff, pixel cap, reduced decode, EXIF orientation.

Uploaded bytes are hostile until proven otherwise. Everything that can be learned
from the container header (format, pixel dimensions, EXIF orientation) is learned
*before* the codec runs, so a decompression bomb costs microseconds and no memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from imagecloud.errors import FileTooLarge, UnsupportedFormat

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# SOFn markers carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


@dataclass(frozen=True)
class ImageHeader:
    """What the container says before any pixel is decoded."""

    format: str  # "jpeg" | "png"
    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int  # EXIF orientation 1..8 (1 = as stored)
    complete: bool  # the stream has its end marker (EOI / IEND)


@dataclass(frozen=True)
class DecodedImage:
    """Grayscale working image plus the geometry needed to map back to the original."""

    gray: np.ndarray  # uint8 (h, w), long side <= the requested working size
    width: int  # original pixel size after EXIF orientation
    height: int
    format: str
    scale: float  # original pixels per working pixel (>= 1)


def sniff_format(data: bytes) -> str:
    """Classify by magic bytes only; names and declared content types are ignored by contract."""
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    raise UnsupportedFormat("not a JPEG or PNG")


def read_header(data: bytes) -> ImageHeader:
    fmt = sniff_format(data)
    if fmt == "png":
        width, height = _png_size(data)
        orientation = 1
        # libpng may hand back a partly grey image for a truncated stream.
        complete = b"IEND" in data[-1024:]
    else:
        width, height, orientation, complete = _jpeg_header(data)
    if width <= 0 or height <= 0:
        raise UnsupportedFormat("zero image size")
    return ImageHeader(fmt, width, height, orientation, complete)


def _png_size(data: bytes) -> tuple[int, int]:
    # The PNG spec requires IHDR to be the first chunk: signature(8) len(4) "IHDR"(4) w(4) h(4).
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise UnsupportedFormat("PNG without IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _jpeg_header(data: bytes) -> tuple[int, int, int, bool]:
    """Walk the marker segments up to the first scan: frame size and EXIF orientation."""
    pos = 2
    n = len(data)
    size: tuple[int, int] | None = None
    orientation = 1
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise UnsupportedFormat("corrupt JPEG marker stream")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > n:
            raise UnsupportedFormat("truncated JPEG segment")
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _SOF_MARKERS:
            if len(segment) < 5:
                raise UnsupportedFormat("short SOF segment")
            height, width = struct.unpack(">HH", segment[1:5])
            size = (int(width), int(height))
        elif marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
        elif marker == 0xDA:  # start of scan: entropy-coded data follows
            if size is None:
                raise UnsupportedFormat("JPEG scan before frame header")
            # Inside entropy-coded data 0xFF is byte-stuffed, so FFD9 after the scan can only be EOI.
            # Without it a large part of the image is missing and the codec would invent grey pixels.
            return size[0], size[1], orientation, data.find(b"\xff\xd9", pos) >= 0
        pos += 2 + length
    raise UnsupportedFormat("JPEG without image data")


def _exif_orientation(tiff: bytes) -> int:
    """Orientation tag (0x0112) of IFD0; anything malformed or absurd means 'as stored'."""
    if len(tiff) < 8:
        return 1
    endian = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if endian is None:
        return 1
    (ifd,) = struct.unpack(endian + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(endian + "H", tiff[ifd : ifd + 2])
    for i in range(min(count, 512)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, typ = struct.unpack(endian + "HH", tiff[entry : entry + 4])
        if tag == 0x0112:
            if typ == 3:  # SHORT
                (value,) = struct.unpack(endian + "H", tiff[entry + 8 : entry + 10])
            elif typ == 4:  # LONG, seen in the wild
                (value,) = struct.unpack(endian + "I", tiff[entry + 8 : entry + 12])
            else:
                return 1
            return int(value) if 1 <= value <= 8 else 1
    return 1


def _reduction_flag(fmt: str, long_side: int, working_size: int) -> tuple[int, int]:
    """Largest libjpeg DCT-domain reduction that still leaves at least the working size."""
    if fmt == "jpeg":
        for factor, flag in (
            (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
            (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
            (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
        ):
            if long_side // factor >= working_size:
                return flag, factor
    return cv2.IMREAD_GRAYSCALE, 1


def _apply_orientation(gray: np.ndarray, orientation: int) -> np.ndarray:
    if orientation == 1:
        return gray
    ops: dict[int, list[int | str]] = {
        2: ["flip1"],
        3: [cv2.ROTATE_180],
        4: ["flip0"],
        5: [cv2.ROTATE_90_CLOCKWISE, "flip1"],
        6: [cv2.ROTATE_90_CLOCKWISE],
        7: [cv2.ROTATE_90_COUNTERCLOCKWISE, "flip1"],
        8: [cv2.ROTATE_90_COUNTERCLOCKWISE],
    }
    out = gray
    for op in ops[orientation]:
        if op == "flip1":
            out = cv2.flip(out, 1)
        elif op == "flip0":
            out = cv2.flip(out, 0)
        else:
            out = cv2.rotate(out, int(op))
    return np.ascontiguousarray(out)


def decode_image(data: bytes, *, max_pixels: int, working_size: int) -> DecodedImage:
    """Decode untrusted bytes to a grayscale working image.

    Raises ``UnsupportedFormat`` for anything that is not a complete JPEG/PNG and ``FileTooLarge``
    when the header announces more than ``max_pixels`` pixels.
    """
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise FileTooLarge(
            f"image is {header.width}x{header.height} pixels, over the limit of {max_pixels:,} pixels"
        )
    if not header.complete:  # checked after the size: 20006 takes precedence over 20007
        raise UnsupportedFormat("truncated image (no end marker)")
    flag, factor = _reduction_flag(header.format, max(header.width, header.height), working_size)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        # Orientation is applied by us from the header we already parsed, so the result does not
        # depend on the OpenCV build's EXIF handling.
        gray = cv2.imdecode(buf, flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise UnsupportedFormat(f"undecodable image: {exc}") from exc
    if gray is None or gray.size == 0:
        raise UnsupportedFormat("undecodable image")
    if gray.dtype != np.uint8:  # 16-bit PNG decoded with ANYDEPTH semantics by some builds
        gray = (gray.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    expected = (-(-header.height // factor), -(-header.width // factor))
    if abs(gray.shape[0] - expected[0]) > 1 or abs(gray.shape[1] - expected[1]) > 1:
        raise UnsupportedFormat("decoded size disagrees with header")
    gray = _apply_orientation(gray, header.orientation)
    width, height = header.width, header.height
    if header.orientation >= 5:  # 90-degree rotations swap the axes
        width, height = height, width
    long_side = max(gray.shape[:2])
    if long_side > working_size:
        f = working_size / long_side
        size = (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    scale = max(width / gray.shape[1], height / gray.shape[0])
    return DecodedImage(
        gray=np.ascontiguousarray(gray), width=width, height=height, format=header.format, scale=float(scale)
    )
