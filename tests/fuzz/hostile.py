"""Hostile and unusual images, built on the fly: the decode path's regression cases and fuzz seeds."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests import imagegen


def _pil(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _rgb(seed: int = 5, width: int = 320, height: int = 240) -> Image.Image:
    return Image.fromarray(imagegen.poster(seed, width, height)[:, :, ::-1])


def jpeg_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A small real JPEG whose frame header claims ``width`` x ``height`` pixels."""
    data = bytearray(imagegen.encode(imagegen.poster(6, 64, 64)))
    pos = 2
    while pos < len(data):
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        pos += 2 + length
    raise AssertionError("no SOF marker")


def png_deflate_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A genuine, fully valid PNG of zeros: ~100 KB on the wire, 100 megapixels once inflated."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def cmyk_jpeg() -> bytes:
    return _pil(_rgb().convert("CMYK"), "JPEG", quality=90)


def png16() -> bytes:
    wide = (imagegen.poster(7, 320, 240).astype(np.uint16) * 257).astype(np.uint16)
    return imagegen.encode(wide, "png")


def animated_png() -> bytes:
    frames = [_rgb(8), _rgb(9), _rgb(10)]
    return _pil(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)


def progressive_jpeg() -> bytes:
    return _pil(_rgb(11), "JPEG", quality=90, progressive=True)


def exif_orientation_jpeg(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return _pil(_rgb(12), "JPEG", quality=90, exif=exif.tobytes())


def seeds() -> dict[str, bytes]:
    """Every case by name: what the fuzzer starts from and what the regression tests replay."""
    cases = {
        "jpeg_bomb": jpeg_bomb(),
        "png_deflate_bomb": png_deflate_bomb(),
        "cmyk_jpeg": cmyk_jpeg(),
        "png16": png16(),
        "animated_png": animated_png(),
        "progressive_jpeg": progressive_jpeg(),
        "plain_jpeg": imagegen.encode(imagegen.poster(13, 160, 120)),
        "plain_png": imagegen.encode(imagegen.poster(14, 160, 120), "png"),
    }
    for value in (0, 6, 9, 255, 65535):
        cases[f"exif_orientation_{value}"] = exif_orientation_jpeg(value)
    return cases
