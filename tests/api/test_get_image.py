"""GetImage: with or without credentials, and the original file behind ``imageurl``."""

from __future__ import annotations

import httpx

from tests.api.helpers import add_ok, both_blob_stores


class TestWithoutCredentials:
    def test_answer_fields(self, server, account, target_jpeg, target_array):
        add_ok(server, account, "public", target_jpeg, metadata='{"a": 1}')
        body = server.call("GetImage", {"channel": account.channel, "identifier": "public"})
        assert body["returncode"] == 0
        assert body["identifier"] == "public"
        assert body["channel"] == account.channel
        assert body["metadata"] == '{"a": 1}'
        assert body["level"] in range(1, 6)
        assert 0 <= body["matchratio"] <= 1
        assert (body["width"], body["height"]) == (target_array.shape[1], target_array.shape[0])
        assert body["imageurl"].startswith("/")

    def test_empty_credentials_count_as_none(self, server, account, target_jpeg):
        add_ok(server, account, "public", target_jpeg)
        data = {"channel": account.channel, "identifier": "public", "username": "", "secretkey": ""}
        assert server.call("GetImage", data)["returncode"] == 0

    def test_codes(self, server, account):
        cases = [
            (20002, {"channel": account.channel}),
            (20002, {"identifier": "abc"}),
            (20002, {"channel": "no-such-channel"}),
            (20003, {"channel": "no-such-channel", "identifier": "x"}),
            (20010, {"channel": account.channel, "identifier": "x"}),
            (20014, {"channel": account.channel, "identifier": "missing"}),
        ]
        for code, data in cases:
            assert server.call("GetImage", data)["returncode"] == code, data


class TestWithCredentials:
    def test_owner(self, server, account, target_jpeg):
        add_ok(server, account, "mine", target_jpeg)
        assert server.call("GetImage", account.auth(identifier="mine"))["returncode"] == 0

    def test_wrong_or_partial_credentials_are_20001(self, server, account, target_jpeg):
        add_ok(server, account, "mine", target_jpeg)
        base = {"channel": account.channel, "identifier": "mine"}
        for credentials in (
            {"username": account.username, "secretkey": "wrong"},
            {"username": account.username},
            {"secretkey": account.secretkey},
            {"username": "nobody-at-all", "secretkey": account.secretkey},
        ):
            body = server.call("GetImage", {**base, **credentials})
            assert body["returncode"] == 20001, credentials
            assert set(body) == {"returncode", "message"}

    def test_other_users_credentials_are_20004(self, server, account, other_account, target_jpeg):
        add_ok(server, account, "mine", target_jpeg)
        body = server.call("GetImage", other_account.auth(channel=account.channel, identifier="mine"))
        assert body == {"returncode": 20004, "message": "not your channel"}


@both_blob_stores
class TestImageUrl:
    def test_original_bytes_with_headers_and_304(self, server, account, target_jpeg, target_png):
        add_ok(server, account, "as_jpeg", target_jpeg)
        add_ok(server, account, "as_png", target_png)
        for identifier, data, content_type in (
            ("as_jpeg", target_jpeg, "image/jpeg"),
            ("as_png", target_png, "image/png"),
        ):
            url = server.call("GetImage", {"channel": account.channel, "identifier": identifier})["imageurl"]
            response = httpx.get(server.url + url)
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["content-type"] == content_type
            etag = response.headers["etag"]
            assert etag.startswith('"') and etag.endswith('"')
            assert "max-age" in response.headers["cache-control"]
            again = httpx.get(server.url + url, headers={"If-None-Match": etag})
            assert again.status_code == 304
            assert again.content == b""
            assert httpx.get(server.url + url, headers={"If-None-Match": '"other"'}).content == data

    def test_distinct_targets_distinct_etags(self, server, account, target_jpeg, second_jpeg):
        add_ok(server, account, "one", target_jpeg)
        add_ok(server, account, "two", second_jpeg)
        urls = [server.call("GetImage", account.auth(identifier=i))["imageurl"] for i in ("one", "two")]
        etags = {httpx.get(server.url + url).headers["etag"] for url in urls}
        assert len(etags) == 2

    def test_url_dies_with_the_target(self, server, account, target_jpeg):
        add_ok(server, account, "short_lived", target_jpeg)
        url = server.call("GetImage", account.auth(identifier="short_lived"))["imageurl"]
        server.call("RemoveImage", account.auth(identifier="short_lived"))
        assert httpx.get(server.url + url).status_code == 404

    def test_guessed_or_hostile_paths_are_404(self, server):
        for path in (
            "/files/" + "0" * 32,
            "/files/..%2F..%2Fimagecloud.db",
            "/files/imagecloud.db",
            "/files/",
        ):
            assert httpx.get(server.url + path).status_code == 404, path
