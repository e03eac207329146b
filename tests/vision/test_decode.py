from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from imagecloud.errors import FileTooLarge, UnsupportedFormat
from imagecloud.vision.decode import decode_image, read_header
from tests.imagegen import encode, poster

MAX = 40_000_000


def _decode(data: bytes, working: int = 640):
    return decode_image(data, max_pixels=MAX, working_size=working)


def _with_exif_orientation(jpeg: bytes, value: int) -> bytes:
    """Insert an APP1 Exif segment whose IFD0 holds only the orientation tag."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


class TestSniffing:
    @pytest.mark.parametrize(
        "data",
        [b"", b"hello world, this is text\n" * 10, b"GIF89a" + bytes(100), b"\xff\xd8", b"\x89PNG\r\n\x1a\n"],
    )
    def test_not_an_image(self, data: bytes) -> None:
        with pytest.raises(UnsupportedFormat):
            _decode(data)

    def test_jpeg_and_png(self) -> None:
        img = poster(1, 300, 200)
        assert _decode(encode(img, "jpeg")).format == "jpeg"
        assert _decode(encode(img, "png")).format == "png"

    def test_garbage_after_magic(self) -> None:
        with pytest.raises(UnsupportedFormat):
            _decode(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)


class TestTruncation:
    def test_truncated_jpeg(self) -> None:
        data = encode(poster(2), "jpeg")
        with pytest.raises(UnsupportedFormat):
            _decode(data[: len(data) * 6 // 10])

    def test_truncated_png(self) -> None:
        data = encode(poster(2), "png")
        with pytest.raises(UnsupportedFormat):
            _decode(data[: len(data) // 2])


class TestPixelLimit:
    def test_png_bomb_rejected_from_header(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A real 1x1 PNG whose IHDR claims 20000x20000: must fail before any decode or allocation.
        real = encode(np.zeros((1, 1, 3), np.uint8), "png")
        ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
        bomb = real[:8] + _png_chunk(b"IHDR", ihdr) + real[33:]
        decoded: list[int] = []

        def imdecode(buf: np.ndarray, flags: int) -> np.ndarray | None:
            decoded.append(len(buf))
            return None

        # The header alone decides: the decoder is never handed the bytes.
        monkeypatch.setattr(cv2, "imdecode", imdecode)
        with pytest.raises(FileTooLarge):
            _decode(bomb)
        assert decoded == []

    def test_jpeg_over_limit(self) -> None:
        data = encode(poster(3, 400, 300), "jpeg")
        with pytest.raises(FileTooLarge):
            decode_image(data, max_pixels=100_000, working_size=640)

    def test_header_size(self) -> None:
        header = read_header(encode(poster(3, 401, 299), "jpeg"))
        assert (header.width, header.height) == (401, 299)


class TestPixelFormats:
    def test_16bit_png(self) -> None:
        img = poster(4, 200, 100).astype(np.uint16) * 257
        out = _decode(encode(img, "png"))
        assert out.gray.dtype == np.uint8 and out.gray.shape == (100, 200)
        assert 20 < float(out.gray.mean()) < 235

    def test_alpha_and_grey_png(self) -> None:
        bgra = cv2.cvtColor(poster(5, 200, 100), cv2.COLOR_BGR2BGRA)
        assert _decode(encode(bgra, "png")).gray.shape == (100, 200)
        grey = cv2.cvtColor(poster(5, 200, 100), cv2.COLOR_BGR2GRAY)
        assert _decode(encode(grey, "png")).gray.shape == (100, 200)
        assert _decode(encode(grey, "jpeg")).gray.shape == (100, 200)

    def test_palette_png(self) -> None:
        image = pytest.importorskip("PIL.Image")
        buf = io.BytesIO()
        image.fromarray(poster(6, 200, 100)[:, :, ::-1]).convert("P").save(buf, "PNG")
        assert _decode(buf.getvalue()).gray.shape == (100, 200)

    def test_cmyk_jpeg(self) -> None:
        image = pytest.importorskip("PIL.Image")
        buf = io.BytesIO()
        image.fromarray(poster(7, 200, 100)[:, :, ::-1]).convert("CMYK").save(buf, "JPEG", quality=90)
        out = _decode(buf.getvalue())
        assert out.gray.shape == (100, 200) and out.gray.std() > 10


class TestOrientation:
    @pytest.mark.parametrize(
        ("value", "rotate"),
        [(6, cv2.ROTATE_90_CLOCKWISE), (8, cv2.ROTATE_90_COUNTERCLOCKWISE), (3, cv2.ROTATE_180)],
    )
    def test_exif_rotation_applied(self, value: int, rotate: int) -> None:
        img = poster(8, 300, 200)
        out = _decode(_with_exif_orientation(encode(img, "jpeg", 95), value))
        expected = cv2.rotate(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), rotate)
        assert out.gray.shape == expected.shape
        assert (out.width, out.height) == (expected.shape[1], expected.shape[0])
        assert float(np.abs(out.gray.astype(int) - expected).mean()) < 8

    @pytest.mark.parametrize("value", [0, 9, 4242])
    def test_absurd_orientation_ignored(self, value: int) -> None:
        out = _decode(_with_exif_orientation(encode(poster(9, 300, 200), "jpeg"), value))
        assert (out.width, out.height) == (300, 200)


class TestWorkingSize:
    def test_large_jpeg_reduced(self) -> None:
        img = cv2.resize(poster(10), (2400, 3200))
        out = _decode(encode(img, "jpeg"), working=640)
        assert max(out.gray.shape) == 640
        assert (out.width, out.height) == (2400, 3200)
        assert out.scale == pytest.approx(5.0, rel=0.01)

    def test_small_image_not_upscaled(self) -> None:
        out = _decode(encode(poster(11, 300, 200), "png"), working=640)
        assert out.gray.shape == (200, 300) and out.scale == pytest.approx(1.0)
