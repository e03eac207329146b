"""Raw-socket HTTP for tests that must control exactly when each byte of a request is sent."""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx

from tests.server import ServerProcess


def encoded(server: ServerProcess, endpoint: str, data: dict[str, Any], files: Any = None) -> bytes:
    """The complete HTTP/1.1 request httpx would send, as bytes."""
    request = httpx.Request("POST", f"{server.url}/{endpoint}", data=data, files=files)
    body = request.read()
    head = [f"POST /{endpoint} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in ("host", "connection")]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def connect(server: ServerProcess, timeout: float = 60.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the one response on a ``Connection: close`` socket."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert match, raw[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(match.group(1)), headers, body


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """One sample from /metrics; 0 when the series does not exist yet."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if _normalise(series) == wanted:
            return float(value)
    return 0.0


def _normalise(series: str) -> str:
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    pairs = sorted(p for p in rest.rstrip("}").split(",") if p)
    return name + "{" + ",".join(pairs) + "}"
