"""Structured logs: one JSON object per line, each carrying the id of the request it belongs to.

The request id comes from the caller's ``X-Request-ID`` when it is a sane token (so a gateway's id follows
the request through), otherwise it is made here; either way it is echoed in the response header. It lives
in a context variable, which anyio copies into worker threads, so service log lines carry it too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is logged and echoed back: only short plain tokens, never text that could forge log lines.
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("imagecloud.access")


@dataclass
class RequestInfo:
    id: str
    returncode: int | None = None
    # Why a request was refused (the error's detail), so the access line alone explains a non-zero code.
    reason: str | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("imagecloud_request", default=None)


def current_request() -> RequestInfo | None:
    return _current.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        info = current_request()
        if info is not None:
            entry["request_id"] = info.id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, *, as_json: bool) -> None:
    """Route every logger (uvicorn's included) to one stderr handler."""
    handler = logging.StreamHandler()
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestContext:
    """ASGI middleware: assigns the request id, echoes it, and writes one access log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER.lower().encode(), b"")
        text = given.decode("latin-1")
        info = RequestInfo(id=text if _VALID_ID.fullmatch(text) else uuid.uuid4().hex)
        token = _current.set(info)
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((REQUEST_ID_HEADER.lower().encode(), info.id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            fields: dict[str, Any] = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            if info.returncode is not None:
                fields["returncode"] = info.returncode
            if info.reason is not None:
                fields["reason"] = info.reason
            access_log.info("%s %s %d", fields["method"], fields["path"], status, extra={"fields": fields})
            _current.reset(token)
