"""A real imagecloud server process on 127.0.0.1 for HTTP tests, plus an in-process operator handle."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from imagecloud.config import load_settings
from imagecloud.service import Service, build_service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(settings: dict[str, str]) -> dict[str, str]:
    """The ``IMAGECLOUD_*`` variables of imagecloud settings (field → value)."""
    return {f"IMAGECLOUD_{name.upper()}": value for name, value in settings.items()}


@dataclass
class Account:
    username: str
    secretkey: str
    channel: str

    def auth(self, **fields: Any) -> dict[str, Any]:
        return {"username": self.username, "secretkey": self.secretkey, "channel": self.channel, **fields}


class ServerProcess:
    """``imagecloud serve`` in a child process, with a data directory the test owns."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log_level: str = "warning",
        database_url: str = "",
        settings: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        """``database_url`` reaches the server as ``--database`` (empty: the embedded SQLite file in the data
        directory); ``settings`` (field → value) as ``IMAGECLOUD_*`` variables. The operator handle gets both
        as they are, so server and operator open the same database and blob store. ``args`` are more options
        of ``imagecloud serve``."""
        self.data_dir = data_dir
        self.database_url = database_url
        self.args = args or []
        self.log_level = log_level
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings or {}
        self.env = {**os.environ, **settings_env(self.settings), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"
        self._operator: Service | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagecloud",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--log-level",
                self.log_level,
                *(["--database", self.database_url] if self.database_url else []),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def operator(self) -> Service:
        """The same database and blob store, opened in this process: what the operator CLI does."""
        if self._operator is None:
            settings = {"database_url": self.database_url, **self.settings}
            self._operator = build_service(load_settings(None, data_dir=self.data_dir, **settings))
            self._operator.db.migrate()
        return self._operator

    def new_account(self, name: str, quota: int | None = None) -> Account:
        key = self.operator.create_user(name)
        channel = f"{name}-ch"
        self.operator.create_channel(channel, name, quota)
        return Account(username=name, secretkey=key, channel=channel)

    def post(self, endpoint: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/{endpoint}", data=data, timeout=60, **kwargs)

    def call(self, endpoint: str, data: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """POST and return the JSON body, checking the transport rules every vendor answer obeys."""
        response = self.post(endpoint, data, **kwargs)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        body: dict[str, Any] = response.json()
        assert isinstance(body["returncode"], int)
        assert isinstance(body["message"], str) and body["message"]
        return body
