"""CreateChannel / DeleteChannel / ListChannels (extensions)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import add_ok, blob_files, find, stored_identifiers
from tests.server import Account, ServerProcess


def creds(account: Account, **fields: Any) -> dict[str, Any]:
    return {"username": account.username, "secretkey": account.secretkey, **fields}


def names(server: ServerProcess, account: Account) -> list[str]:
    body = server.call("ListChannels", creds(account))
    assert body["returncode"] == 0
    return [c["channel"] for c in body["channels"]]


class TestCreate:
    def test_create_then_use(self, server, account, target_jpeg):
        name = f"{account.channel}.new"
        body = server.call("CreateChannel", creds(account, channel=name))
        assert body["returncode"] == 0 and body["channel"] == name
        assert names(server, account) == sorted([account.channel, name], key=str.encode)
        add_ok(server, Account(account.username, account.secretkey, name), "abc", target_jpeg)

    def test_names_are_global(self, server, account, other_account):
        assert server.call("CreateChannel", creds(account, channel=account.channel))["returncode"] == 20002
        assert (
            server.call("CreateChannel", creds(other_account, channel=account.channel))["returncode"] == 20004
        )

    @pytest.mark.parametrize("name", ["", "has space", "x" * 65, "slash/", "ümlaut"])
    def test_bad_names_are_20002(self, server, account, name):
        assert server.call("CreateChannel", creds(account, channel=name))["returncode"] == 20002
        assert names(server, account) == [account.channel]

    def test_wrong_key_is_20001(self, server, account):
        data = {"username": account.username, "secretkey": "wrong", "channel": "whatever-new"}
        assert server.call("CreateChannel", data)["returncode"] == 20001
        assert server.call("ListChannels", {**data})["returncode"] == 20001


class TestList:
    def test_counts_and_quota(self, server, account, target_jpeg):
        add_ok(server, account, "abc", target_jpeg)
        (entry,) = server.call("ListChannels", creds(account))["channels"]
        assert entry == {"channel": account.channel, "count": 1, "quota": 1_000_000}


class TestDelete:
    def test_removes_targets_files_and_index_entries(self, server, account, target_jpeg, target_photo):
        before = blob_files(server)
        add_ok(server, account, "abc", target_jpeg)
        body = server.call("DeleteChannel", creds(account, channel=account.channel))
        assert body == {"returncode": 0, "message": "success"}
        assert blob_files(server) == before
        assert stored_identifiers(server, account.channel) == []
        assert names(server, account) == []
        assert "identifier" not in find(server, account, target_photo)
        assert server.call("GetImages", account.auth())["returncode"] == 20003
        assert server.call("DeleteChannel", creds(account, channel=account.channel))["returncode"] == 20003

    def test_codes(self, server, account, other_account):
        assert server.call("DeleteChannel", creds(account))["returncode"] == 20002
        assert server.call("DeleteChannel", creds(account, channel="no-such-channel"))["returncode"] == 20003
        assert (
            server.call("DeleteChannel", creds(other_account, channel=account.channel))["returncode"] == 20004
        )
        data = {"username": account.username, "secretkey": "x", "channel": account.channel}
        assert server.call("DeleteChannel", data)["returncode"] == 20001
        assert names(server, account) == [account.channel]
