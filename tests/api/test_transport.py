"""The transport rules of section 2: the clients that must work unchanged, and what lies outside the API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import add_ok, both_blob_stores, find_in, stored_identifiers
from tests.server import Account, ServerProcess

MiB = 1024 * 1024
VENDOR_ENDPOINTS = ["AddImage", "RemoveImage", "GetImages", "GetImage", "Statistics", "FindImage"]


def multipart(parts: Sequence[tuple[str, str | None, str | None, bytes]]) -> tuple[bytes, str]:
    """A hand-built multipart body: (field, filename, content type, value) in the given order."""
    boundary = f"----WebKitFormBoundary{uuid.uuid4().hex[:16]}"
    chunks = []
    for name, filename, content_type, value in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        chunks.append(head.encode() + b"\r\n" + value + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_raw(server: ServerProcess, endpoint: str, body: bytes, content_type: str) -> dict[str, object]:
    response = httpx.post(
        f"{server.url}/{endpoint}", content=body, headers={"content-type": content_type}, timeout=60
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    result: dict[str, object] = response.json()
    return result


class TestClients:
    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
    def test_curl_dash_f(self, server, account, target_jpeg, target_photo, tmp_path: Path):
        poster, photo = tmp_path / "poster.jpg", tmp_path / "photo.jpg"
        poster.write_bytes(target_jpeg)
        photo.write_bytes(target_photo)
        auth = [
            "-F",
            f"username={account.username}",
            "-F",
            f"secretkey={account.secretkey}",
            "-F",
            f"channel={account.channel}",
        ]

        def curl(endpoint: str, *args: str) -> dict[str, object]:
            out = subprocess.run(
                ["curl", "-sS", f"{server.url}/{endpoint}", *auth, *args],
                capture_output=True,
                check=True,
                timeout=60,
            )
            result: dict[str, object] = json.loads(out.stdout)
            return result

        added = curl(
            "AddImage",
            "-F",
            "identifier=poster.001",
            "-F",
            'metadata={"title":"Spring show"}',
            "-F",
            f"image=@{poster}",
        )
        assert added["returncode"] == 0
        found = curl("FindImage", "-F", f"image=@{photo}")
        assert (found["identifier"], found["metadata"]) == ("poster.001", '{"title":"Spring show"}')

    def test_httpx_files(self, server, account, target_jpeg):
        add_ok(server, account, "via_httpx", target_jpeg)
        assert stored_identifiers(server, account.channel) == ["via_httpx"]

    def test_browser_formdata(self, server, account, target_jpeg, target_photo):
        # A Blob appended to FormData without a name arrives as filename "blob", octet-stream, and the
        # file part may come first.
        body, content_type = multipart(
            [
                ("image", "blob", "application/octet-stream", target_jpeg),
                ("identifier", None, None, b"from_browser"),
                ("channel", None, None, account.channel.encode()),
                ("secretkey", None, None, account.secretkey.encode()),
                ("username", None, None, account.username.encode()),
            ]
        )
        assert post_raw(server, "AddImage", body, content_type)["returncode"] == 0
        body, content_type = multipart(
            [
                ("image", "blob", "application/octet-stream", target_photo),
                ("username", None, None, account.username.encode()),
                ("secretkey", None, None, account.secretkey.encode()),
            ]
        )
        assert post_raw(server, "FindImage", body, content_type)["identifier"] == "from_browser"

    def test_wechat_upload_file(self, server, account, target_png, target_photo):
        # wx.uploadFile: file field "image", a tmp_ file name, image/jpeg whatever the real format is,
        # formData fields after the file.
        def wx(endpoint: str, data: bytes, form: dict[str, str]) -> dict[str, object]:
            parts: list[tuple[str, str | None, str | None, bytes]] = [
                ("image", "tmp_7f3a9c1e2b.jpg", "image/jpeg", data)
            ]
            parts += [(key, None, None, value.encode()) for key, value in form.items()]
            return post_raw(server, endpoint, *multipart(parts))

        form = {"username": account.username, "secretkey": account.secretkey, "channel": account.channel}
        assert wx("AddImage", target_png, {**form, "identifier": "from_wechat"})["returncode"] == 0
        assert wx("FindImage", target_photo, form)["identifier"] == "from_wechat"

    def test_urlencoded_for_non_file_endpoints(self, server, account, target_jpeg):
        add_ok(server, account, "abc", target_jpeg)
        for endpoint, extra in [
            ("GetImages", {}),
            ("GetImage", {"identifier": "abc"}),
            ("Statistics", {"startdate": "2023", "enddate": "2023"}),
            ("RemoveImage", {"identifier": "abc"}),
        ]:
            response = httpx.post(f"{server.url}/{endpoint}", data=account.auth(**extra))
            assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
            assert response.json()["returncode"] == 0, endpoint

    def test_unknown_fields_are_ignored(self, server, account, target_jpeg, target_photo):
        extra = {"foo": "bar", "IMAGE": "x", "Username": "nobody", "debug": "1"}
        add_ok(server, account, "extra", target_jpeg, **extra)
        assert find_in(server, account, target_photo, **extra)["identifier"] == "extra"
        assert server.call("GetImages", account.auth(**extra))["totalcount"] == 1

    def test_field_names_are_case_sensitive(self, server, account):
        data = {"Username": account.username, "SecretKey": account.secretkey, "Channel": account.channel}
        assert server.call("GetImages", data)["returncode"] == 20001


class TestOutsideTheApi:
    @pytest.mark.parametrize("endpoint", VENDOR_ENDPOINTS)
    def test_get_is_405(self, server, endpoint):
        assert httpx.get(f"{server.url}/{endpoint}").status_code == 405

    def test_unknown_path_is_404(self, server):
        assert httpx.post(f"{server.url}/addimage").status_code == 404
        assert httpx.post(f"{server.url}/NoSuchThing").status_code == 404

    def test_health(self, server):
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/readyz").status_code == 200

    @both_blob_stores
    def test_readiness_names_the_database_and_blob_store_it_reached(self, backend, server):
        body = httpx.get(f"{server.url}/readyz").json()
        assert body["dependencies"] == {
            "database": {"backend": backend.name, "ok": True},
            "blobs": {"backend": "s3" if server.settings.get("blobs") else "local", "ok": True},
        }

    def test_declared_body_over_the_cap_is_413_before_it_is_sent(self, server, account):
        """Only the headers go out: a 413 proves the server did not wait to buffer 33 MiB."""
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                b"POST /AddImage HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n"
                + f"Content-Length: {33 * MiB}\r\n\r\n".encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        assert server.call("GetImages", account.auth())["returncode"] == 0

    def test_streamed_body_over_the_cap_is_413(self, server, account):
        """Chunked, no length given: cut off once the count passes the cap."""
        body, content_type = multipart(
            [
                ("username", None, None, account.username.encode()),
                ("image", "big.jpg", "image/jpeg", b"\xff\xd8\xff" + b"\0" * (34 * MiB)),
            ]
        )

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), MiB):
                yield body[start : start + MiB]

        try:
            response = httpx.post(
                f"{server.url}/AddImage", content=chunks(), headers={"content-type": content_type}, timeout=60
            )
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server may close before the client finished writing: also a refusal
        else:
            assert response.status_code == 413
        assert server.call("GetImages", account.auth())["returncode"] == 0

    def test_body_under_the_cap_but_over_the_limit_is_a_result_code(self, server, account):
        body = server.call(
            "AddImage",
            account.auth(identifier="big"),
            files={"image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * (6 * MiB), "image/jpeg")},
        )
        assert body["returncode"] == 20006
        body = server.call(
            "FindImage",
            account.auth(),
            files={"image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * (11 * MiB), "image/jpeg")},
        )
        assert body["returncode"] == 20006

    @pytest.mark.parametrize(
        ("endpoint", "unterminated", "no_boundary"),
        [("AddImage", 20005, 20005), ("FindImage", 20005, 20005), ("GetImages", 20001, 20002)],
    )
    def test_malformed_multipart_is_a_result_code(self, server, account, endpoint, unterminated, no_boundary):
        broken = b'--x\r\nContent-Disposition: form-data; name="username"\r\n\r\nabc'  # never terminated
        # Cut short, the parts that did arrive count (here a username without a key).
        assert (
            post_raw(server, endpoint, broken, "multipart/form-data; boundary=x")["returncode"]
            == unterminated
        )
        # Without a boundary nothing can be read: a multipart endpoint says 20005, the others 20002.
        assert post_raw(server, endpoint, broken, "multipart/form-data")["returncode"] == no_boundary
        assert server.call("GetImages", account.auth())["returncode"] == 0

    def test_hundreds_of_parts_are_refused_with_20002(self, server, account: Account):
        parts = [(f"f{n}", None, None, b"x") for n in range(500)]
        fields = [(k, None, None, v.encode()) for k, v in account.auth().items()]
        body, content_type = multipart([*fields, *parts])
        assert post_raw(server, "GetImages", body, content_type)["returncode"] == 20002
