"""The operator CLI, run as a real subprocess against the data directory of a running server."""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import imagegen
from tests.api.helpers import add_ok, find
from tests.s3 import S3Server
from tests.server import Account, ServerProcess, free_port, settings_env

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


def _ratings(server: ServerProcess, account: Account) -> dict[str, tuple[int, float, str]]:
    """(level, matchratio, blob key) of the account's targets, read from the server's database."""
    with sqlite3.connect(server.data_dir / "imagecloud.db") as db:
        rows = db.execute(
            "SELECT t.identifier, t.level, t.matchratio, t.blob_key FROM targets t "
            "JOIN channels c ON c.id = t.channel_id WHERE c.name = ?",
            (account.channel,),
        ).fetchall()
    return {identifier: (level, ratio, key) for identifier, level, ratio, key in rows}


def _age_ratings(server: ServerProcess) -> None:
    """What an older rating would have left behind: every target at level 5."""
    with sqlite3.connect(server.data_dir / "imagecloud.db") as db:
        db.execute("UPDATE targets SET level = 5, matchratio = 0.9")


class TestRerate:
    def test_stored_levels_become_the_current_rating_channel_by_channel(
        self, server: ServerProcess, account: Account, other_account: Account
    ) -> None:
        added = {
            "good": add_ok(server, account, "good", imagegen.encode(imagegen.poster(41))),
            "weak": add_ok(server, account, "weak", imagegen.encode(imagegen.poster(42))),
        }
        other = add_ok(server, other_account, "theirs", imagegen.encode(imagegen.poster(43)))
        # The original behind "weak" is now a blank page: today's rating would refuse it.
        weak_key = _ratings(server, account)["weak"][2]
        (server.data_dir / "blobs" / weak_key[:2] / weak_key).write_bytes(imagegen.encode(imagegen.blank()))
        _age_ratings(server)

        out = cli(server, "rerate", "--channel", account.channel).stdout
        mine = _ratings(server, account)
        assert mine["good"][:2] == (added["good"]["level"], added["good"]["matchratio"])
        assert mine["weak"][:2] == (1, 0.0)
        changed = sum(level != 5 for level in (added["good"]["level"], 1))
        assert f"rated 2 targets; {changed} changed level" in out
        assert "1 would be refused today" in out and f"{account.channel}/weak" in out
        # Another channel is left alone until it is asked for.
        assert _ratings(server, other_account)["theirs"][:2] == (5, 0.9)
        cli(server, "rerate")
        assert _ratings(server, other_account)["theirs"][:2] == (other["level"], other["matchratio"])
        # Only the rating changed: the server, which kept running, still finds the target.
        photo = imagegen.encode(imagegen.photo(imagegen.poster(41), 7).image)
        assert find(server, account, photo, channel=account.channel)["identifier"] == "good"
        assert server.call("GetImage", account.auth(identifier="good"))["level"] == added["good"]["level"]

    def test_a_missing_or_unreadable_original_is_skipped_and_left_as_it_was(
        self, server: ServerProcess, account: Account
    ) -> None:
        for name, seed in (("gone", 44), ("garbled", 45)):
            add_ok(server, account, name, imagegen.encode(imagegen.poster(seed)))
        stored = _ratings(server, account)
        gone, garbled = (
            server.data_dir / "blobs" / k[:2] / k for k in (stored["gone"][2], stored["garbled"][2])
        )
        gone.unlink()
        garbled.write_bytes(b"not an image at all")
        out = cli(server, "rerate", "--channel", account.channel).stdout
        assert "rated 0 targets" in out
        assert f"skipped {account.channel}/gone: original missing" in out
        assert f"skipped {account.channel}/garbled:" in out
        assert _ratings(server, account) == stored

    def test_an_unknown_channel(self, server: ServerProcess) -> None:
        result = cli(server, "rerate", "--channel", unique("nochannel"), ok=False)
        assert result.returncode == 1 and "no channel" in result.stderr


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


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _serve_demo(data_dir: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagecloud",
                "serve",
                "--demo",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # Ready, or the test stops here: a server still loading its index answers 503, and the curl lines must
    # not run against it (nor this loop spin on a core the server needs).
    deadline = time.monotonic() + 120
    while not _ready(port):
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        if time.monotonic() >= deadline:
            process.terminate()
            process.wait(timeout=30)
            raise AssertionError(f"the demo server never became ready:\n{log.read_text()}")
        time.sleep(0.1)
    return process


def _printed(text: str, label: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.strip().startswith(label))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
class TestServeDemo:
    def test_samples_keys_console_and_curl_lines_that_work(self, tmp_path: Path):
        port = free_port()
        process = _serve_demo(tmp_path / "data", tmp_path / "serve.log", port)
        try:
            text = (tmp_path / "serve.log").read_text()
            assert f"console: http://127.0.0.1:{port}/console/" in text
            assert "username:  demo" in text
            secretkey, appkey = _printed(text, "secretkey:"), _printed(text, "appkey:")
            lines = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
            sample_line, add_line, find_line = lines
            # The first search works with nothing else to do: a sample poster in a photo of it, app key only.
            assert f"secretkey={appkey}" in sample_line and secretkey not in sample_line
            assert secretkey in add_line and f"secretkey={appkey}" in find_line
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

            found = run(sample_line)
            assert found["returncode"] == 0 and found["identifier"] == "demo.poster1"
            assert run(add_line)["returncode"] == 0
            found = run(find_line)
            assert found["returncode"] == 0 and found["identifier"] == "poster1"
            # The app key can only search; the address of the server leads to the console.
            data = {"username": "demo", "secretkey": appkey, "channel": "demo"}
            assert httpx.post(f"http://127.0.0.1:{port}/GetImages", data=data).json()["returncode"] == 20001
            root = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
            assert root.status_code == 200 and str(root.url).endswith("/console/")
            assert "<title>imagecloud console</title>" in root.text
        finally:
            process.terminate()
            process.wait(timeout=30)

    def test_a_restart_keeps_the_keys_and_samples(self, tmp_path: Path):
        first = _serve_demo(tmp_path / "data", tmp_path / "first.log", free_port())
        first.terminate()
        first.wait(timeout=30)
        port = free_port()
        second = _serve_demo(tmp_path / "data", tmp_path / "second.log", port)
        try:
            before, after = (tmp_path / "first.log").read_text(), (tmp_path / "second.log").read_text()
            for label in ("secretkey:", "appkey:"):
                assert _printed(before, label) == _printed(after, label)
            data = {"username": "demo", "secretkey": _printed(after, "secretkey:"), "channel": "demo"}
            body = httpx.post(f"http://127.0.0.1:{port}/GetImages", data=data).json()
            assert [image["identifier"] for image in body["images"]] == [
                "demo.poster1",
                "demo.poster2",
                "demo.poster3",
            ]
        finally:
            second.terminate()
            second.wait(timeout=30)


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


class TestServeWithS3Blobs:
    def test_blobs_flag_with_the_standard_aws_variables(self, tmp_path: Path, s3_server: S3Server) -> None:
        """``--blobs`` on the command line, the keys in AWS_* variables, the endpoint in the environment."""
        address = s3_server.address()
        env = {
            "IMAGECLOUD_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        }
        server = ServerProcess(tmp_path / "data", env=env, args=["--blobs", address])
        server.start()
        try:
            assert httpx.get(f"{server.url}/readyz").json() == {
                "status": "ready",
                "index": True,
                "database": True,
                "dependencies": {
                    "database": {"backend": "sqlite", "ok": True},
                    "blobs": {"backend": "s3", "ok": True},
                },
            }
            account = server.new_account("s3cli")
            poster = imagegen.encode(imagegen.poster(4))
            body = server.call(
                "AddImage", account.auth(identifier="in_s3"), files={"image": ("a.jpg", poster)}
            )
            assert body["returncode"] == 0, body
            url = server.call("GetImage", account.auth(identifier="in_s3"))["imageurl"]
            key = url.rsplit("/", 1)[-1]
            assert list(s3_server.store(address).keys()) == [key]
            assert httpx.get(server.url + url).content == poster
        finally:
            server.stop()

    def test_a_bucket_that_does_not_answer_is_refused_at_start(
        self, tmp_path: Path, s3_server: S3Server
    ) -> None:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "imagecloud",
                "serve",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                **settings_env(s3_server.settings("s3://no-such-bucket/x")),
            },
        )
        assert result.returncode == 1
        assert "s3://no-such-bucket/x does not answer" in result.stderr


class TestRefusedSettings:
    """A mistyped setting is refused before anything starts, with one line naming it and no traceback."""

    def _run(
        self, tmp_path: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imagecloud", *args, "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    def test_a_blob_store_that_is_not_a_bucket_address(self, tmp_path: Path) -> None:
        result = self._run(tmp_path, "serve", "--blobs", "/srv/originals", "--port", str(free_port()))
        assert result.returncode == 2
        assert "setting blobs:" in result.stderr and "'/srv/originals'" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "data").exists(), "nothing may be created for a refused start"

    def test_a_cluster_on_the_embedded_database(self, tmp_path: Path) -> None:
        result = self._run(tmp_path, "serve", "--cluster", "127.0.0.1:6379", "--port", str(free_port()))
        assert result.returncode == 2
        assert result.stderr.startswith("setting ") and "cluster needs a database" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "data").exists(), "nothing may be created for a refused start"

    def test_cluster_status_without_a_cluster(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "imagecloud", "cluster", "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env={key: value for key, value in os.environ.items() if key != "IMAGECLOUD_CLUSTER"},
        )
        assert result.returncode == 2
        assert "no cluster given" in result.stderr and "Traceback" not in result.stderr

    def test_a_value_from_the_environment(self, tmp_path: Path) -> None:
        result = self._run(tmp_path, "channel", "list", env={"IMAGECLOUD_SECOND_PASS": "sometimes"})
        assert result.returncode == 2
        assert "setting second_pass:" in result.stderr and "'sometimes'" in result.stderr
        assert "Traceback" not in result.stderr
