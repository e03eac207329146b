"""App keys (extension): CreateAppKey / ListAppKeys / RevokeAppKey, and what an app key may do."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from imagecloud.storage import AppKey
from tests.api.helpers import add_ok, jpeg
from tests.server import Account, ServerProcess


def owner(account: Account, **fields: Any) -> dict[str, Any]:
    return {"username": account.username, "secretkey": account.secretkey, **fields}


def create(server: ServerProcess, account: Account, name: str, **fields: Any) -> str:
    body = server.call("CreateAppKey", owner(account, name=name, **fields))
    assert body["returncode"] == 0, body
    assert body["name"] == name
    key: str = body["appkey"]
    return key


def as_app(account: Account, key: str) -> Account:
    """The account as an app sees it: the owner's username with an app key in ``secretkey``."""
    return Account(account.username, key, account.channel)


def find(server: ServerProcess, account: Account, photo: bytes, **fields: Any) -> dict[str, Any]:
    return server.call("FindImage", owner(account, **fields), files=jpeg(photo, "photo.jpg"))


def second_channel(server: ServerProcess, account: Account) -> Account:
    name = f"{account.channel}.two"
    assert server.call("CreateChannel", owner(account, channel=name))["returncode"] == 0
    return Account(account.username, account.secretkey, name)


class TestCreate:
    def test_the_key_finds_the_owners_targets(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg)
        key = create(server, account, "webar")
        assert key != account.secretkey
        body = find(server, as_app(account, key), target_photo, channel=account.channel)
        assert body["returncode"] == 0 and body["identifier"] == "poster"

    def test_only_a_hash_is_stored(self, backend, server, account):
        key = create(server, account, "hashed")
        with server.operator.db.session() as session:
            stored = session.scalar(select(AppKey.key_hash).where(AppKey.name == "hashed"))
        assert stored == hashlib.sha256(key.encode()).hexdigest()
        assert key.encode() not in backend.stored_bytes(server)

    def test_each_key_is_new(self, server, account):
        assert create(server, account, "one") != create(server, account, "two")

    def test_codes(self, server, account, other_account):
        create(server, account, "taken")
        cases = [
            (20001, {"username": account.username, "secretkey": "wrong", "name": "x"}),
            (20002, owner(account)),
            (20002, owner(account, name="")),
            (20002, owner(account, name="has space")),
            (20002, owner(account, name="x" * 65)),
            (20002, owner(account, name="taken")),
            (20003, owner(account, name="x", channels="no-such-channel")),
            (20004, owner(account, name="x", channels=f"{account.channel},{other_account.channel}")),
        ]
        for code, data in cases:
            body = server.call("CreateAppKey", data)
            assert body["returncode"] == code, (data, body)
            assert "appkey" not in body
        names = [entry["name"] for entry in server.call("ListAppKeys", owner(account))["keys"]]
        assert names == ["taken"]

    def test_an_app_key_cannot_make_keys(self, server, account):
        key = create(server, account, "app")
        body = server.call("CreateAppKey", owner(as_app(account, key), name="more"))
        assert body["returncode"] == 20001


class TestList:
    def test_names_channels_and_creation_but_never_the_key(self, server, account):
        two = second_channel(server, account)
        everywhere = create(server, account, "b-all")
        limited = create(server, account, "a-limited", channels=f" {two.channel} ,{account.channel}")
        response = server.post("ListAppKeys", owner(account))
        body = response.json()
        assert body["returncode"] == 0
        assert [(k["name"], k["channels"]) for k in body["keys"]] == [
            ("a-limited", sorted([account.channel, two.channel], key=str.encode)),
            ("b-all", []),
        ]
        for entry in body["keys"]:
            assert set(entry) == {"name", "channels", "created"}
            assert entry["created"].endswith("Z")
        assert everywhere not in response.text and limited not in response.text

    def test_other_owners_keys_are_not_listed(self, server, account, other_account):
        create(server, other_account, "theirs")
        assert server.call("ListAppKeys", owner(account))["keys"] == []


class TestRevoke:
    def test_revoked_key_stops_others_keep_working(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg)
        gone, kept = create(server, account, "gone"), create(server, account, "kept")
        body = server.call("RevokeAppKey", owner(account, name="gone"))
        assert body == {"returncode": 0, "message": "success"}
        assert find(server, as_app(account, gone), target_photo)["returncode"] == 20001
        assert find(server, as_app(account, kept), target_photo)["identifier"] == "poster"
        assert find(server, account, target_photo)["identifier"] == "poster"
        assert [k["name"] for k in server.call("ListAppKeys", owner(account))["keys"]] == ["kept"]

    def test_codes(self, server, account, other_account):
        key = create(server, account, "mine")
        create(server, other_account, "theirs")
        assert server.call("RevokeAppKey", owner(account))["returncode"] == 20002
        assert server.call("RevokeAppKey", owner(account, name="unknown"))["returncode"] == 20002
        assert server.call("RevokeAppKey", owner(account, name="theirs"))["returncode"] == 20002
        assert server.call("RevokeAppKey", owner(as_app(account, key), name="mine"))["returncode"] == 20001
        assert [k["name"] for k in server.call("ListAppKeys", owner(other_account))["keys"]] == ["theirs"]
        assert [k["name"] for k in server.call("ListAppKeys", owner(account))["keys"]] == ["mine"]


class TestSearchOnly:
    """An app key may call FindImage and GetImage; to every other endpoint it is a wrong key."""

    @pytest.mark.parametrize(
        ("endpoint", "fields", "upload"),
        [
            ("AddImage", {"identifier": "added"}, True),
            ("UpdateImage", {"identifier": "poster", "metadata": "{}"}, False),
            ("RemoveImage", {"identifier": "poster"}, False),
            ("GetImages", {}, False),
            ("GetImageDetail", {"identifier": "poster"}, False),
            ("Statistics", {"startdate": "2020", "enddate": "2030"}, False),
            ("CreateChannel", {"channel": "made-by-an-app"}, False),
            ("DeleteChannel", {}, False),
            ("ListChannels", {}, False),
            ("ListAppKeys", {}, False),
            ("RevokeAppKey", {"name": "app"}, False),
        ],
    )
    def test_other_endpoints_answer_20001(self, server, account, target_jpeg, endpoint, fields, upload):
        add_ok(server, account, "poster", target_jpeg)
        app = as_app(account, create(server, account, "app"))
        files = jpeg(target_jpeg) if upload else None
        body = server.call(endpoint, app.auth(**fields), files=files)
        assert body["returncode"] == 20001, body
        assert server.call("GetImages", account.auth())["totalcount"] == 1
        assert [k["name"] for k in server.call("ListAppKeys", owner(account))["keys"]] == ["app"]

    def test_get_image(self, server, account, target_jpeg):
        add_ok(server, account, "poster", target_jpeg, metadata='{"a": 1}')
        app = as_app(account, create(server, account, "app"))
        body = server.call("GetImage", app.auth(identifier="poster"))
        assert body["returncode"] == 0 and body["metadata"] == '{"a": 1}'

    def test_an_app_key_is_its_owners_only(self, server, account, other_account, target_jpeg):
        add_ok(server, account, "poster", target_jpeg)
        key = create(server, account, "app")
        stranger = Account(other_account.username, key, account.channel)
        assert server.call("GetImage", stranger.auth(identifier="poster"))["returncode"] == 20001
        assert find(server, stranger, target_jpeg)["returncode"] == 20001

    def test_another_owners_channel_is_20004(self, server, account, other_account, target_jpeg):
        add_ok(server, other_account, "poster", target_jpeg)
        app = as_app(account, create(server, account, "app"))
        data = app.auth(channel=other_account.channel, identifier="poster")
        assert server.call("GetImage", data)["returncode"] == 20004
        assert find(server, app, target_jpeg, channel=other_account.channel)["returncode"] == 20004


class TestChannelLimits:
    def test_a_channel_it_may_not_search_is_20004(self, server, account, target_jpeg, target_photo):
        two = second_channel(server, account)
        add_ok(server, two, "poster", target_jpeg)
        app = as_app(account, create(server, account, "first-only", channels=account.channel))
        assert find(server, app, target_photo, channel=two.channel)["returncode"] == 20004
        assert server.call("GetImage", app.auth(channel=two.channel, identifier="poster"))["returncode"] == (
            20004
        )
        assert find(server, app, target_photo, channel=account.channel)["returncode"] == 0

    def test_without_channel_only_its_channels_are_searched(
        self, server, account, target_jpeg, target_photo, second_jpeg, second_photo
    ):
        two = second_channel(server, account)
        add_ok(server, account, "first", target_jpeg)
        add_ok(server, two, "second", second_jpeg)
        app = as_app(account, create(server, account, "first-only", channels=account.channel))
        assert find(server, app, target_photo)["identifier"] == "first"
        body = find(server, app, second_photo)
        assert body["returncode"] == 0 and "identifier" not in body
        # The secret key and an unlimited key still search everything.
        assert find(server, account, second_photo)["identifier"] == "second"
        everywhere = as_app(account, create(server, account, "all"))
        assert find(server, everywhere, second_photo)["identifier"] == "second"

    def test_a_channel_created_later_is_searched_by_an_unlimited_key(
        self, server, account, target_jpeg, target_photo
    ):
        app = as_app(account, create(server, account, "all"))
        later = second_channel(server, account)
        add_ok(server, later, "late", target_jpeg)
        assert find(server, app, target_photo)["identifier"] == "late"
