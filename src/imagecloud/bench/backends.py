"""Where a benchmark sends its requests: the service in this process, or a running server over HTTP.

Both report *server-side* seconds per call: in-process the service call itself, over HTTP the
``Server-Timing`` header, so network and client overhead never blur the numbers.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from imagecloud.config import Settings
from imagecloud.errors import ImageCloudError
from imagecloud.service import Service, Upload, build_service


@dataclass(frozen=True)
class Call:
    body: dict[str, Any]
    seconds: float

    @property
    def returncode(self) -> int:
        code: int = self.body.get("returncode", -1)
        return code


class Backend(Protocol):
    channel: str

    def add(self, identifier: str, data: bytes) -> Call: ...
    def find(self, data: bytes) -> Call: ...
    def close(self) -> None: ...


def _upload(data: bytes) -> Upload:
    return Upload(size=len(data), read=lambda: data)


class InProcessBackend:
    """A fresh service on a temporary SQLite database and blob folder: the same code the server runs."""

    def __init__(self, data_dir: Path | None = None, **settings: Any) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="imagecloud-bench-")
        root = data_dir or Path(self._tmp.name if self._tmp else ".")
        self.service: Service = build_service(Settings(data_dir=root, **settings))
        self.service.start()
        self.username = "bench"
        self.secretkey = self.service.create_user(self.username)
        self.channel = "bench"
        self.service.create_channel(self.channel, self.username)

    def _timed(self, func: Any, *args: Any) -> Call:
        started = time.perf_counter()
        try:
            body = {"returncode": 0, **func(*args)}
        except ImageCloudError as error:
            body = {"returncode": error.returncode, "message": error.message}
        return Call(body=body, seconds=time.perf_counter() - started)

    def add(self, identifier: str, data: bytes) -> Call:
        return self._timed(
            self.service.add_image,
            self.username,
            self.secretkey,
            self.channel,
            identifier,
            None,
            _upload(data),
        )

    def find(self, data: bytes) -> Call:
        return self._timed(
            self.service.find_image, self.username, self.secretkey, self.channel, None, _upload(data)
        )

    def close(self) -> None:
        self.service.db.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()


class HttpBackend:
    """A running server; the benchmark creates (and afterwards deletes) a channel of its own."""

    def __init__(self, url: str, username: str, secretkey: str, keep: bool = False) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=120)
        self.username = username
        self.secretkey = secretkey
        self.keep = keep
        self.channel = f"bench-{secrets.token_hex(4)}"
        body = self._post("/CreateChannel", {"channel": self.channel}).body
        if body.get("returncode") != 0:
            raise RuntimeError(f"could not create a benchmark channel: {body}")

    def _post(self, path: str, fields: dict[str, str], data: bytes | None = None) -> Call:
        form = {"username": self.username, "secretkey": self.secretkey, **fields}
        files = {"image": ("image", data, "application/octet-stream")} if data is not None else None
        started = time.perf_counter()
        response = self.client.post(path, data=form, files=files)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return Call(body=response.json(), seconds=server_seconds(response) or elapsed)

    def add(self, identifier: str, data: bytes) -> Call:
        return self._post("/AddImage", {"channel": self.channel, "identifier": identifier}, data)

    def find(self, data: bytes) -> Call:
        return self._post("/FindImage", {"channel": self.channel}, data)

    def close(self) -> None:
        if not self.keep:
            self._post("/DeleteChannel", {"channel": self.channel})
        self.client.close()


def server_seconds(response: httpx.Response) -> float | None:
    for part in response.headers.get("server-timing", "").split(","):
        name, _, params = part.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            try:
                return float(params[4:]) / 1000
            except ValueError:
                return None
    return None
