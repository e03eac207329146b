"""RemoveImage: gone from the index, the database and the blob folder."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import add_ok, blob_files, both_blob_stores, find_in, stored_identifiers
from tests.server import Account, ServerProcess


def remove(server: ServerProcess, account: Account, **fields: Any) -> dict[str, Any]:
    return server.call("RemoveImage", account.auth(**fields))


@both_blob_stores
class TestSuccess:
    def test_never_matched_again_file_gone_and_getimage_20014(
        self, server, account, target_jpeg, target_photo
    ):
        before = blob_files(server)
        add_ok(server, account, "doomed", target_jpeg)
        assert find_in(server, account, target_photo)["identifier"] == "doomed"
        body = remove(server, account, identifier="doomed")
        assert body == {"returncode": 0, "message": "success"}
        assert blob_files(server) == before
        assert stored_identifiers(server, account.channel) == []
        assert "identifier" not in find_in(server, account, target_photo)
        assert "identifier" not in server.call(
            "FindImage",
            {"username": account.username, "secretkey": account.secretkey},
            files={"image": ("p.jpg", target_photo, "image/jpeg")},
        )
        assert server.call("GetImage", account.auth(identifier="doomed"))["returncode"] == 20014
        assert remove(server, account, identifier="doomed")["returncode"] == 20014

    def test_only_the_named_target_goes(self, server, account, target_jpeg, second_jpeg, second_photo):
        add_ok(server, account, "stays", second_jpeg)
        add_ok(server, account, "goes", target_jpeg)
        assert remove(server, account, identifier="goes")["returncode"] == 0
        assert stored_identifiers(server, account.channel) == ["stays"]
        assert find_in(server, account, second_photo)["identifier"] == "stays"

    def test_identifier_can_be_reused_after_removal(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "again", target_jpeg, metadata='"old"')
        remove(server, account, identifier="again")
        add_ok(server, account, "again", target_jpeg, metadata='"new"')
        found = find_in(server, account, target_photo)
        assert (found["identifier"], found["metadata"]) == ("again", '"new"')

    def test_urlencoded_works(self, server, account, target_jpeg):
        add_ok(server, account, "urlenc", target_jpeg)
        response = server.post("RemoveImage", account.auth(identifier="urlenc"))
        assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert response.json()["returncode"] == 0


class TestErrors:
    def test_precedence(self, server, account, other_account, target_jpeg):
        add_ok(server, account, "kept", target_jpeg)
        cases = [
            (20001, {**account.auth(identifier="kept"), "secretkey": "wrong"}),
            (20001, {"channel": account.channel, "identifier": "kept"}),
            (20002, account.auth(channel="no-such-channel")),  # missing identifier beats unknown channel
            (20002, {"username": account.username, "secretkey": account.secretkey, "identifier": "kept"}),
            (20003, account.auth(channel="no-such-channel", identifier="x")),
            (20004, account.auth(channel=other_account.channel, identifier="x")),
            (20010, account.auth(identifier="x")),
            (20010, account.auth(identifier="has space")),
            (20014, account.auth(identifier="never_added")),
            (20014, account.auth(identifier="KEPT")),  # case-sensitive
        ]
        for code, data in cases:
            body = server.call("RemoveImage", data)
            assert body["returncode"] == code, (data, body)
        assert stored_identifiers(server, account.channel) == ["kept"]

    @pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
    def test_no_form_at_all_is_20001(self, server, account, content_type):
        headers = {"content-type": content_type} if content_type else {}
        response = server.post("RemoveImage", content=b'{"username": "x"}', headers=headers)
        assert response.status_code == 200
        assert response.json()["returncode"] == 20001
