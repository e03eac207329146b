"""Transport-level request body limits, enforced while the body streams in (before anything is buffered):
a size cap (HTTP 413) and a deadline for the whole body (HTTP 408), so neither a huge nor a trickling or
stalled upload can hold memory or a connection for long."""

from __future__ import annotations

import math

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised from ``receive`` when the streamed body passes the cap; the app maps it to HTTP 413."""


class BodyTimeout(Exception):
    """Raised from ``receive`` when the body is not complete within the deadline; answered with HTTP 408."""


class BodySizeLimit:
    """Answer HTTP 413 to bodies over ``max_bytes``, by Content-Length up front or by counting chunks, and
    HTTP 408 to bodies still incomplete ``timeout`` seconds after the app first asked for them."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = math.inf) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout if timeout > 0 else math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reject(send)
            return
        received = 0
        started = False
        complete = False
        deadline: float | None = None

        async def counting_receive() -> Message:
            nonlocal received, complete, deadline
            if complete:
                # After the body only a disconnect can arrive, which may rightly take forever.
                return await receive()
            if deadline is None:
                deadline = anyio.current_time() + self.timeout
            with anyio.move_on_after(deadline - anyio.current_time()) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise BodyTimeout
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send)
        except BodyTimeout:
            if not started:
                await _reject(send, 408, BODY_TIMEOUT)


TOO_LARGE_BODY = b'{"detail":"request body too large"}'
BODY_TIMEOUT = b'{"detail":"request body not received in time"}'


async def _reject(send: Send, status: int = 413, body: bytes = TOO_LARGE_BODY) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
