"""The properties the fuzz harnesses check, shared with the regression tests that replay their corpus."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from imagecloud.api.forms import read_form
from imagecloud.errors import FileTooLarge, ImageCloudError, UnsupportedFormat
from imagecloud.vision.decode import decode_image

MAX_PIXELS = 40_000_000
WORKING_SIZE = 640
MAX_FIELD_BYTES = 1 << 20


def decode_property(data: bytes) -> None:
    """Decoding succeeds with a sane working image, or fails with one of the two mapped errors."""
    try:
        image = decode_image(data, max_pixels=MAX_PIXELS, working_size=WORKING_SIZE)
    except (FileTooLarge, UnsupportedFormat):
        return
    assert image.gray.ndim == 2 and image.gray.dtype.name == "uint8"
    assert max(image.gray.shape) <= WORKING_SIZE
    assert image.width * image.height <= MAX_PIXELS


def form_property(data: bytes) -> None:
    """First line: the Content-Type header; the rest: the body. Parsing ends in a form or a result code."""
    content_type, _, body = data.partition(b"\n")
    asyncio.run(_parse(content_type[:300], body))


def _request(content_type: bytes, body: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/AddImage",
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        "query_string": b"",
    }
    return Request(scope, receive)


async def _parse(content_type: bytes, body: bytes) -> None:
    for multipart_only in (True, False):
        try:
            form = await read_form(
                _request(content_type, body), multipart_only=multipart_only, max_field_bytes=MAX_FIELD_BYTES
            )
        except ImageCloudError:
            continue
        upload = form.upload()
        if upload is not None:
            assert len(upload.read()) == upload.size
        for name in form.text:
            assert isinstance(form.get(name), str)
