"""Slow and idle connections are closed by the server, and cannot lock out owners (slowloris).

A few hundred connections on 127.0.0.1 send a request head one byte at a time, or nothing at all, against a
real server with small limits; meanwhile an owner's FindImage keeps answering. The bounds on how soon the
server closes them are generous: the test checks that it does, not how fast.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.helpers import jpeg
from tests.server import Account, ServerProcess

# `make bench-slow` runs the same test with a thousand connections.
SLOW = int(os.environ.get("IMAGECLOUD_SLOW_CONNECTIONS", "200"))
HEAD = b"POST /FindImage HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


class Trickle:
    """Connections that each send a request head one byte per ``interval``, never finishing it."""

    def __init__(self, server: ServerProcess, count: int) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.setblocking(False)
            self.sockets.append(sock)
        self.closed: set[int] = set()  # indexes of sockets the server has closed
        self.sent = 0

    def step(self) -> None:
        """Send the next byte on every open socket and note those the server closed."""
        byte = HEAD[self.sent % len(HEAD) : self.sent % len(HEAD) + 1] if self.sent < len(HEAD) else b"x"
        self.sent += 1
        for n, sock in enumerate(self.sockets):
            if n in self.closed:
                continue
            if _closed_by_server(sock):
                self.closed.add(n)
                continue
            try:
                sock.send(byte)
            except (BrokenPipeError, ConnectionResetError):
                self.closed.add(n)
            except BlockingIOError:
                pass

    def open(self) -> int:
        return len(self.sockets) - len(self.closed)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (anything it said before is read and dropped)."""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _wait_closed(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


class Owner:
    """An owner sending FindImage over fresh connections in a thread, collecting the result codes."""

    def __init__(self, server: ServerProcess, account: Account, photo: bytes) -> None:
        self.codes: list[int | str] = []
        self._stop = threading.Event()
        data = {"username": account.username, "secretkey": account.secretkey}

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.codes.append(server.post("FindImage", data, files=jpeg(photo)).json()["returncode"])
                except Exception as error:  # a refused or reset connection is exactly what must not happen
                    self.codes.append(type(error).__name__)
                self._stop.wait(0.2)

        self._thread = threading.Thread(target=run)
        self._thread.start()

    def stop(self) -> list[int | str]:
        self._stop.set()
        self._thread.join()
        return self.codes


def _server(data_dir: Path, **settings: str) -> ServerProcess:
    env = {f"IMAGECLOUD_{name.upper()}": value for name, value in settings.items()}
    server = ServerProcess(data_dir, env=env)
    server.start()
    return server


@pytest.fixture(scope="module")
def timeouts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _server(tmp_path_factory.mktemp("slow"), header_timeout="2", idle_timeout="2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A head deadline far beyond the test: only the cap can close the slow connections here.
    server = _server(tmp_path_factory.mktemp("capped"), header_timeout="600", max_connections="50")
    yield server
    server.stop()


def test_slow_heads_are_closed_while_owners_are_served(timeouts_server: ServerProcess, target_jpeg):
    account = timeouts_server.new_account("slowowner")
    timeouts_server.call("AddImage", account.auth(identifier="poster"), files=jpeg(target_jpeg))
    trickle = Trickle(timeouts_server, SLOW)
    owner = Owner(timeouts_server, account, target_jpeg)
    try:
        # A byte every 0.25 s keeps every connection busy well past the 2 s head deadline; 60 s is the bound.
        deadline = time.monotonic() + 60
        while trickle.open() and time.monotonic() < deadline:
            trickle.step()
            time.sleep(0.25)
        assert trickle.open() == 0, f"{trickle.open()} of {SLOW} slow connections still open"
    finally:
        codes = owner.stop()
        trickle.close()
    assert codes and set(codes) == {0}, codes


def test_idle_connections_are_closed(timeouts_server: ServerProcess):
    """One that never sends anything, and one kept alive after its answer."""
    silent = socket.create_connection(("127.0.0.1", timeouts_server.port))
    kept = socket.create_connection(("127.0.0.1", timeouts_server.port))
    try:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        kept.settimeout(10)
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")
        assert _wait_closed(silent, 30), "a connection that never sent a byte is still open"
        assert _wait_closed(kept, 30), "an idle kept-alive connection is still open"
    finally:
        silent.close()
        kept.close()


def test_connection_cap_makes_room_for_whole_requests(capped_server: ServerProcess, target_jpeg):
    """Three times the cap in slow connections: the longest-waiting are closed, owners still get in."""
    account = capped_server.new_account("capowner")
    trickle = Trickle(capped_server, 150)
    try:
        trickle.step()
        body = capped_server.call("FindImage", account.auth(), files=jpeg(target_jpeg))
        assert body["returncode"] == 0
        deadline = time.monotonic() + 30
        while trickle.open() > 50 and time.monotonic() < deadline:
            time.sleep(0.25)
            trickle.step()
        assert trickle.open() <= 50, f"{trickle.open()} slow connections open with a cap of 50"
        # The oldest went first: the connections still open are the most recent ones.
        assert all(n in trickle.closed for n in range(100))
    finally:
        trickle.close()
