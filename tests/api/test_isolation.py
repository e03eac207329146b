"""One user's channels are invisible to another, on every endpoint."""

from __future__ import annotations

import pytest

from tests.api.helpers import add_ok, blob_files, find, jpeg, stored_identifiers


@pytest.fixture
def a_target(server, account, target_jpeg) -> str:
    add_ok(server, account, "a_target", target_jpeg, metadata='"secret"')
    return "a_target"


class TestOtherUsersChannelIs20004:
    def test_every_endpoint(self, server, account, other_account, a_target, second_jpeg, target_photo):
        blobs = blob_files(server)
        b = other_account.auth(channel=account.channel)  # B's credentials, A's channel
        calls = [
            ("AddImage", {**b, "identifier": "intruder"}, jpeg(second_jpeg)),
            ("RemoveImage", {**b, "identifier": a_target}, None),
            ("GetImages", b, None),
            ("GetImage", {**b, "identifier": a_target}, None),
            ("FindImage", b, jpeg(target_photo)),
            ("UpdateImage", {**b, "identifier": a_target, "metadata": '"stolen"'}, None),
            ("UpdateImage", {**b, "identifier": a_target}, jpeg(second_jpeg)),
            ("DeleteChannel", b, None),
            ("Statistics", {**b, "startdate": "2020", "enddate": "2024"}, None),
            ("Statistics", {**b, "startdate": "2020", "enddate": "2024", "identifier": a_target}, None),
            ("CreateChannel", b, None),
        ]
        for endpoint, data, files in calls:
            body = server.call(endpoint, data, files=files)
            assert body == {"returncode": 20004, "message": "not your channel"}, endpoint
        # Nothing of A's changed.
        assert stored_identifiers(server, account.channel) == [a_target]
        assert blob_files(server) == blobs
        body = server.call("GetImage", account.auth(identifier=a_target))
        assert body["metadata"] == '"secret"'
        channels = server.call(
            "ListChannels", {"username": other_account.username, "secretkey": other_account.secretkey}
        )
        assert account.channel not in {c["channel"] for c in channels["channels"]}


class TestFindWithoutChannel:
    def test_never_returns_another_users_target(
        self, server, account, other_account, target_jpeg, target_photo
    ):
        add_ok(server, other_account, "b_target", target_jpeg)
        body = find(server, account, target_photo)
        assert body["returncode"] == 0
        assert "identifier" not in body
        assert find(server, account, target_photo, maxresults="10").get("results", []) == []
        # The photo does show B's target: B finds it.
        assert find(server, other_account, target_photo)["identifier"] == "b_target"

    def test_own_target_wins_even_when_another_user_has_the_same_picture(
        self, server, account, other_account, target_jpeg, target_photo
    ):
        add_ok(server, other_account, "b_copy", target_jpeg)
        add_ok(server, account, "a_copy", target_jpeg)
        body = find(server, account, target_photo, maxresults="10")
        assert body["identifier"] == "a_copy"
        assert [entry["channel"] for entry in body["results"]] == [account.channel]
