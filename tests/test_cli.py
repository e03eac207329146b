"""The operator CLI, run as a real subprocess against the data directory of a running server."""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.server import ServerProcess, free_port

_names = itertools.count()


def cli(server: ServerProcess, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "imagecloud", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, result.stdout
    return result


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


def list_images(server: ServerProcess, user: str, key: str, channel: str) -> int:
    body = server.call("GetImages", {"username": user, "secretkey": key, "channel": channel})
    code: int = body["returncode"]
    return code


class TestUsers:
    def test_create_prints_a_key_that_authenticates(self, server):
        user, channel = unique("cli"), unique("clich")
        key = cli(server, "user", "create", user).stdout.strip()
        assert len(key) >= 32 and " " not in key
        cli(server, "channel", "create", channel, "--owner", user)
        assert list_images(server, user, key, channel) == 0
        assert list_images(server, user, key + "x", channel) == 20001

    def test_the_key_is_not_stored(self, server):
        user = unique("cli")
        key = cli(server, "user", "create", user).stdout.strip()
        assert key.encode() not in (server.data_dir / "imagecloud.db").read_bytes()

    def test_duplicate_user_fails(self, server):
        user = unique("cli")
        cli(server, "user", "create", user)
        assert "error" in cli(server, "user", "create", user, ok=False).stderr

    def test_rotate_key_invalidates_the_old_key(self, server):
        user, channel = unique("cli"), unique("clich")
        old = cli(server, "user", "create", user).stdout.strip()
        cli(server, "channel", "create", channel, "--owner", user)
        new = cli(server, "user", "rotate-key", user).stdout.strip()
        assert new != old
        assert list_images(server, user, old, channel) == 20001
        assert list_images(server, user, new, channel) == 0
        cli(server, "user", "rotate-key", unique("nobody"), ok=False)


class TestChannels:
    def test_create_list_set_quota_delete(self, server):
        user, channel = unique("cli"), unique("clich")
        key = cli(server, "user", "create", user).stdout.strip()
        out = cli(server, "channel", "create", channel, "--owner", user, "--quota", "5").stdout
        assert channel in out
        rows = [
            line.split() for line in cli(server, "channel", "list", "--owner", user).stdout.splitlines()[1:]
        ]
        assert rows == [[channel, user, "0", "5"]]
        cli(server, "channel", "set-quota", channel, "0")
        body = server.call(
            "AddImage",
            {"username": user, "secretkey": key, "channel": channel, "identifier": "abc"},
            files={"image": ("a.jpg", b"x", "image/jpeg")},
        )
        assert body["returncode"] == 20012  # the new quota is in force for the running server
        cli(server, "channel", "delete", channel)
        assert list_images(server, user, key, channel) == 20003
        assert cli(server, "channel", "list", "--owner", user).stdout.splitlines()[1:] == []

    def test_errors(self, server):
        user = unique("cli")
        cli(server, "user", "create", user)
        cli(server, "channel", "create", unique("clich"), "--owner", unique("nobody"), ok=False)
        cli(server, "channel", "create", "bad name", "--owner", user, ok=False)
        cli(server, "channel", "delete", unique("nochannel"), ok=False)
        cli(server, "channel", "set-quota", unique("nochannel"), "3", ok=False)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_serve_demo_prints_credentials_and_a_working_curl_line(tmp_path: Path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagecloud",
                "serve",
                "--demo",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        text = log.read_text()
        assert "username:  demo" in text
        assert "secretkey: " in text
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
        add_line = next(line for line in lines if "/AddImage" in line)
        find_line = next(line for line in lines if "/FindImage" in line)
        poster = imagegen.poster(7)
        (tmp_path / "poster.jpg").write_bytes(imagegen.encode(poster))
        (tmp_path / "photo.jpg").write_bytes(imagegen.encode(imagegen.photo(poster, 3).image))

        def run(line: str) -> dict[str, object]:
            args = shlex.split(line)
            result = subprocess.run(
                [args[0], "-sS", *args[1:]], cwd=tmp_path, capture_output=True, timeout=60
            )
            assert result.returncode == 0, result.stderr
            body: dict[str, object] = httpx.Response(200, content=result.stdout).json()
            return body

        assert run(add_line)["returncode"] == 0
        found = run(find_line)
        assert found["returncode"] == 0
        assert found["identifier"] == "poster1"
    finally:
        process.terminate()
        process.wait(timeout=30)


class TestAppKeys:
    def test_create_list_revoke(self, server, tmp_path):
        user, channel = unique("cliak"), unique("cliakch")
        key = cli(server, "user", "create", user).stdout.strip()
        cli(server, "channel", "create", channel, "--owner", user)
        appkey = cli(server, "appkey", "create", user, "webar", "--channel", channel).stdout.strip()
        assert appkey != key and " " not in appkey
        photo = imagegen.encode(imagegen.poster(5), "jpeg")
        files = {"image": ("p.jpg", photo, "image/jpeg")}
        search = {"username": user, "secretkey": appkey, "channel": channel}
        assert server.call("FindImage", search, files=files)["returncode"] == 0
        assert list_images(server, user, appkey, channel) == 20001
        listed = cli(server, "appkey", "list", user).stdout
        assert "webar" in listed and channel in listed and appkey not in listed
        cli(server, "appkey", "revoke", user, "webar")
        assert server.call("FindImage", search, files=files)["returncode"] == 20001
        assert "webar" not in cli(server, "appkey", "list", user).stdout

    def test_errors_exit_1(self, server):
        user = unique("cliak")
        cli(server, "user", "create", user)
        assert "no app key" in cli(server, "appkey", "revoke", user, "nothing", ok=False).stderr
        assert cli(server, "appkey", "create", "no-such-user", "x", ok=False).returncode == 1
        assert cli(server, "appkey", "create", user, "x", "--channel", "no-such", ok=False).returncode == 1
