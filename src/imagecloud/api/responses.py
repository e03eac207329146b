"""The one place where results and exceptions become vendor JSON bodies."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from imagecloud.errors import ImageCloudError, SystemBusy

JSON_UTF8 = "application/json; charset=utf-8"
RETRY_AFTER_SECONDS = 1


def success(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"returncode": 0, "message": "success", **body}, media_type=JSON_UTF8)


def failure(error: ImageCloudError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(error, SystemBusy) else None
    return JSONResponse(
        {"returncode": error.returncode, "message": error.wire_message},
        media_type=JSON_UTF8,
        headers=headers,
    )
