"""UpdateImage (extension): replace metadata and/or the picture of an existing identifier, atomically."""

from __future__ import annotations

import httpx

from tests.api import images
from tests.api.helpers import add_ok, blob_files, both_blob_stores, find_in, jpeg, stored_identifiers


@both_blob_stores
class TestMetadata:
    def test_replaces_metadata_only(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg, metadata='"old"')
        blobs = blob_files(server)
        body = server.call("UpdateImage", account.auth(identifier="poster", metadata='{"new": true}'))
        assert body["returncode"] == 0 and body["identifier"] == "poster"
        assert server.call("GetImage", account.auth(identifier="poster"))["metadata"] == '{"new": true}'
        assert find_in(server, account, target_photo)["metadata"] == '{"new": true}'
        assert blob_files(server) == blobs


@both_blob_stores
class TestImage:
    def test_replaces_the_picture(
        self, server, account, target_jpeg, second_jpeg, target_photo, second_photo
    ):
        add_ok(server, account, "poster", target_jpeg, metadata='"kept"')
        before = blob_files(server)
        body = server.call("UpdateImage", account.auth(identifier="poster"), files=jpeg(second_jpeg))
        assert body["returncode"] == 0
        assert body["level"] in range(1, 6)
        after = blob_files(server)
        assert len(after) == len(before) and after != before  # old file gone, new one there
        assert stored_identifiers(server, account.channel) == ["poster"]
        assert "identifier" not in find_in(server, account, target_photo)
        found = find_in(server, account, second_photo)
        assert (found["identifier"], found["metadata"]) == ("poster", '"kept"')
        url = server.call("GetImage", account.auth(identifier="poster"))["imageurl"]
        assert httpx.get(server.url + url).content == second_jpeg


class TestErrors:
    def test_codes_and_nothing_changes(self, server, account, other_account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg, metadata='"old"')
        blobs = blob_files(server)
        cases = [
            (20001, {**account.auth(identifier="poster", metadata='"x"'), "secretkey": "wrong"}, None),
            (20002, account.auth(identifier="poster"), None),  # nothing to update
            (20002, account.auth(identifier="poster", metadata="{bad"), None),
            (20002, account.auth(metadata='"x"'), None),
            (20003, account.auth(channel="no-such-channel", identifier="poster", metadata='"x"'), None),
            (20004, account.auth(channel=other_account.channel, identifier="poster", metadata='"x"'), None),
            (20010, account.auth(identifier="x", metadata='"x"'), None),
            (20014, account.auth(identifier="missing", metadata='"x"'), None),
            (20007, account.auth(identifier="poster", metadata='"x"'), jpeg(b"not an image")),
            (20013, account.auth(identifier="poster", metadata='"x"'), jpeg(images.blank())),
        ]
        for code, data, files in cases:
            body = server.call("UpdateImage", data, files=files)
            assert body["returncode"] == code, (data, body)
        assert server.call("GetImage", account.auth(identifier="poster"))["metadata"] == '"old"'
        assert blob_files(server) == blobs
        assert find_in(server, account, target_photo)["identifier"] == "poster"
