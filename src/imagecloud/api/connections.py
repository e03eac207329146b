"""Connection limits below the application: a deadline for each request head and a cap on open connections.

uvicorn closes a kept-alive connection only after it has been silent for ``timeout_keep_alive``, and any
byte restarts nothing: the timer is simply cancelled. A client that opens a connection and sends nothing, or
sends its request head a byte every few seconds, holds a socket, a file descriptor and parser state for as
long as it likes, and a few thousand such clients exhaust the process (slowloris). The body has its own
deadline (``limits.BodySizeLimit``); this module adds the two missing ones:

* **Head deadline.** A connection must deliver a complete request head within ``header_timeout`` of being
  opened, and of each answer it was given before the next request. Past it the connection is closed (with
  HTTP 408 when part of a head had arrived). Bytes trickling in do not extend it.
* **Connection cap.** With ``max_connections`` open, a new connection makes room by closing the connection
  that has waited longest for a request head; only when every open connection is busy with a request is
  the new one refused. Slow or idle connections thus cannot lock out clients that send whole requests.

Everything runs on the event loop thread, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap (class attributes)."""

    header_timeout: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None  # loop time the wait for a request head began
        self._head_bytes = False  # part of the awaited head has arrived
        self._last_cycle: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waiting_since is not None:
            self._head_bytes = True
        super().data_received(data)
        self._check_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may already parse a pipelined request
        if not self.transport.is_closing():
            self._await_head()
            self._check_head()

    def _await_head(self) -> None:
        self._stop_waiting()
        self._waiting_since = self.loop.time()
        self._head_bytes = bool(self.conn.trailing_data[0])
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._waiting_since = None

    def _check_head(self) -> None:
        """A new request cycle means a complete head was parsed: the wait is over."""
        if self._waiting_since is not None and self.cycle is not None and self.cycle is not self._last_cycle:
            self._last_cycle = self.cycle
            self._stop_waiting()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._drop(HEAD_TIMEOUT if self._head_bytes else b"")

    def _drop(self, farewell: bytes = b"") -> None:
        self._stop_waiting()
        if self.transport.is_closing():
            return
        if farewell:
            with contextlib.suppress(Exception):
                self.transport.write(farewell)
        self.transport.close()

    def _make_room(self) -> None:
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c is not self and c._waiting_since is not None
        ]
        if waiting:
            min(waiting, key=lambda c: c._waiting_since or 0.0)._drop()
        else:
            self._drop()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.run(http=...)`` with these limits."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "max_connections": max(1, max_connections)},
    )


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (never above the hard limit), so the
    connection cap, not the descriptor limit (often 1,024), decides when connections are turned away.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
