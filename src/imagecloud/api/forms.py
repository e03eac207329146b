"""Form parsing that never lets a malformed request become anything but a result code.

Everything the vendor endpoints read arrives as form fields: text values for the named fields, and one file in
``image`` for AddImage / FindImage / UpdateImage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from imagecloud.errors import ImageCloudError, InvalidParameter, MultipartRequired
from imagecloud.service.service import Upload

# Only a handful of fields exist; a request with thousands of parts is hostile, not a client.
_MAX_FIELDS = 64
_MAX_FILES = 4


@dataclass
class Form:
    text: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadFile] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """A text field's value; None when absent or sent as a file."""
        return self.text.get(name)

    def is_file(self, name: str) -> bool:
        """True when ``name`` came only as a file part, where a text value was expected."""
        return name in self.files and name not in self.text

    def upload(self, name: str = "image") -> Upload | None:
        """The file in ``name`` with its size known up front; None when no file part was sent."""
        part = self.files.get(name)
        if part is None:
            return None
        size = part.size if part.size is not None else _measure(part)

        def read() -> bytes:
            part.file.seek(0)
            return part.file.read()

        return Upload(size=size, read=read)


def _measure(part: UploadFile) -> int:
    part.file.seek(0, 2)
    size = part.file.tell()
    part.file.seek(0)
    return size


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request, *, multipart_only: bool, max_field_bytes: int) -> Form:
    """Parse the body. ``multipart_only`` endpoints answer 20005 to anything else."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        pass
    elif multipart_only:
        raise MultipartRequired(
            f"the request is not multipart/form-data (Content-Type: {media_type or 'none'}); "
            "send the image as a file part"
        )
    elif media_type != "application/x-www-form-urlencoded":
        # No form at all: every field is absent, which the credential check answers first.
        return Form()
    try:
        parsed = await request.form(
            max_files=_MAX_FILES, max_fields=_MAX_FIELDS, max_part_size=max_field_bytes
        )
    except (MultiPartException, HTTPException) as exc:
        # Starlette turns a malformed body into HTTP 400 inside an app; the contract wants a result code.
        reason = f"the form could not be read: {getattr(exc, 'detail', None) or exc}"
        error: ImageCloudError = MultipartRequired(reason) if multipart_only else InvalidParameter(reason)
        raise error from exc
    form = Form()
    for name, value in parsed.multi_items():
        if isinstance(value, str):
            form.text.setdefault(name, value)
        elif isinstance(value, UploadFile):
            form.files.setdefault(name, value)
    return form


def require_file(form: Form, name: str = "image") -> Upload:
    upload = form.upload(name)
    if upload is None:
        if form.get(name) is not None:
            raise MultipartRequired(f"field {name!r} is text, not a file")
        raise MultipartRequired(f"no file in field {name!r}")
    return upload
