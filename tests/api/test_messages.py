"""Errors that explain themselves: 20002, 20005 and 20006 say which field or limit and why (contract §2);
the other codes keep their fixed message, and a refused request's log line carries the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api import images
from tests.api.helpers import add, find_in, jpeg
from tests.backends import Backend
from tests.server import ServerProcess

INVALID = "parameter missing or invalid: "
MULTIPART = "multipart stream request needed: "


class TestInvalidParameter:
    def test_metadata(self, server, account, target_jpeg):
        body = add(server, account, "poster", target_jpeg, metadata="{not json")
        assert body == {"returncode": 20002, "message": INVALID + "metadata is not valid JSON"}

    def test_metadata_size_names_the_limit(self, server, account, target_jpeg):
        body = add(server, account, "poster", target_jpeg, metadata='"' + "x" * 70_000 + '"')
        assert body["message"] == INVALID + "metadata is larger than 65536 bytes"

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"startdate": "2026", "enddate": "2026-12"}, "enddate must be yyyy, yyyyMM or yyyyMMdd"),
            ({"startdate": "20261301", "enddate": "2026"}, "startdate is not a real date"),
            ({"enddate": "2026"}, "startdate is missing"),
            ({"startdate": "2027", "enddate": "2026"}, "startdate is after enddate"),
        ],
    )
    def test_dates(self, server, account, fields, reason):
        data = {"username": account.username, "secretkey": account.secretkey, **fields}
        assert server.call("Statistics", data)["message"] == INVALID + reason

    def test_missing_field(self, server, account):
        body = server.call("GetImages", {"username": account.username, "secretkey": account.secretkey})
        assert body == {"returncode": 20002, "message": INVALID + "channel is missing"}

    def test_number(self, server, account):
        body = server.call("GetImages", account.auth(count="5000"))
        assert body["message"] == INVALID + "count must be at most 1000"


class TestMultipart:
    def test_not_multipart(self, server, account):
        body = server.call("FindImage", {"username": account.username, "secretkey": account.secretkey})
        assert body["returncode"] == 20005
        assert body["message"] == (
            MULTIPART
            + "the request is not multipart/form-data (Content-Type: application/x-www-form-urlencoded);"
            " send the image as a file part"
        )

    def test_no_file_in_image(self, server, account, target_jpeg):
        files = {"photo": ("p.jpg", target_jpeg, "image/jpeg")}
        body = server.call("FindImage", account.auth(), files=files)
        assert body == {"returncode": 20005, "message": MULTIPART + "no file in field 'image'"}

    def test_text_in_image(self, server, account, target_jpeg):
        files = {"other": ("p.jpg", target_jpeg, "image/jpeg")}
        body = server.call("FindImage", account.auth(image="photo.jpg"), files=files)
        assert body == {"returncode": 20005, "message": MULTIPART + "field 'image' is text, not a file"}


class TestSizeLimits:
    def test_bytes_name_the_add_limit(self, server, account):
        body = add(server, account, "poster", images.oversize_garbage(5 * 2**20 + 1))
        assert body["message"] == (
            "file size limit exceeded: image is 5242881 bytes, "
            "over the AddImage limit of 5242880 bytes (5 MiB)"
        )

    def test_pixels_name_the_limit(self, server, account, png_bomb):
        body = find_in(server, account, png_bomb)
        assert body["message"] == (
            "file size limit exceeded: image is 20000x20000 pixels, over the limit of 40,000,000 pixels"
        )


class TestPlainCodes:
    """Only 20002, 20005 and 20006 carry a reason: a 20001 never says what was wrong with the credentials."""

    def test_wrong_credentials(self, server, account, target_photo):
        data = {"username": account.username, "secretkey": "wrong", "channel": account.channel}
        body = server.call("FindImage", data, files=jpeg(target_photo))
        assert body == {"returncode": 20001, "message": "user secret key not correct"}
        data = {"username": "no-such-user", "secretkey": account.secretkey, "channel": account.channel}
        assert server.call("FindImage", data, files=jpeg(target_photo))["message"] == (
            "user secret key not correct"
        )

    def test_not_found(self, server, account):
        body = server.call("GetImage", account.auth(identifier="missing"))
        assert body == {"returncode": 20014, "message": "image identifier not exists"}


@pytest.fixture
def logging_server(backend: Backend, tmp_path: Path) -> Iterator[ServerProcess]:
    process = backend.server(tmp_path / "data", env={"IMAGECLOUD_LOG_JSON": "true"}, log_level="info")
    process.start()
    yield process
    process.stop()


class TestLogLine:
    def test_the_access_line_of_a_refused_request_has_the_reason(self, logging_server, target_jpeg):
        account = logging_server.new_account("logged")
        response = logging_server.post(
            "AddImage", account.auth(identifier="poster", metadata="{"), files=jpeg(target_jpeg)
        )
        request_id = response.headers["x-request-id"]
        logging_server.stop()  # flushes the log
        lines = [
            json.loads(line) for line in logging_server.log_path.read_text().splitlines() if line[:1] == "{"
        ]
        (access,) = [
            line
            for line in lines
            if line.get("logger") == "imagecloud.access" and line.get("request_id") == request_id
        ]
        assert access["returncode"] == 20002
        assert access["reason"] == "metadata is not valid JSON"
