"""AddImage: result codes, their precedence, hostile uploads and atomicity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from tests import imagegen
from tests.api import images
from tests.api.helpers import (
    add_ok,
    blob_files,
    both_blob_stores,
    find_in,
    jpeg,
    stored_blob,
    stored_identifiers,
    total_count,
)
from tests.server import Account, ServerProcess

MiB = 1024 * 1024


@contextmanager
def nothing_stored(server: ServerProcess, account: Account, photo: bytes | None = None) -> Iterator[None]:
    """The block must leave no row, no blob file and no index entry behind."""
    blobs = blob_files(server)
    rows = stored_identifiers(server, account.channel)
    total = total_count(server, account)
    yield
    assert blob_files(server) == blobs
    assert stored_identifiers(server, account.channel) == rows
    assert total_count(server, account) == total
    if photo is not None:
        assert "identifier" not in find_in(server, account, photo)


def expect(
    server: ServerProcess, code: int, data: dict[str, Any] | None, files: Any = None, **kwargs: Any
) -> None:
    body = server.call("AddImage", data, files=files, **kwargs)
    assert body["returncode"] == code, body
    assert set(body) == {"returncode", "message"}, body


@both_blob_stores
class TestSuccess:
    def test_answer_fields(self, server, account, target_jpeg):
        body = add_ok(server, account, "poster.001", target_jpeg)
        assert body["message"] == "success"
        assert body["identifier"] == "poster.001"
        assert body["level"] in {1, 2, 3, 4, 5}
        assert isinstance(body["matchratio"], float) and 0 <= body["matchratio"] <= 1

    def test_nothing_similar_is_an_empty_list(self, server, account, target_jpeg, second_jpeg):
        add_ok(server, account, "first", target_jpeg)
        assert add_ok(server, account, "second", second_jpeg)["similar"] == []

    def test_stored_row_file_and_index_entry_appear_together(
        self, server, account, target_jpeg, target_photo
    ):
        blobs = blob_files(server)
        add_ok(server, account, "one", target_jpeg)
        new_files = blob_files(server) - blobs
        assert len(new_files) == 1
        assert stored_blob(server, new_files.pop()) == target_jpeg
        assert stored_identifiers(server, account.channel) == ["one"]
        # Read-your-writes: findable by the very next request.
        assert find_in(server, account, target_photo)["identifier"] == "one"

    def test_png_target(self, server, account, target_png, target_photo):
        add_ok(server, account, "as_png", target_png)
        assert find_in(server, account, target_photo)["identifier"] == "as_png"

    def test_metadata_is_returned_verbatim(self, server, account, target_jpeg):
        metadata = ' { "title" : "Spring show",\n "price": 1.50, "tags": ["ü", "\\u00fc"] } '
        add_ok(server, account, "with_meta", target_jpeg, metadata=metadata)
        body = server.call("GetImage", account.auth(identifier="with_meta"))
        assert body["metadata"] == metadata

    def test_metadata_exactly_at_the_limit_is_accepted(self, server, account, target_jpeg):
        metadata = json.dumps("x" * (64 * 1024 - 2))
        assert len(metadata.encode()) == 64 * 1024
        add_ok(server, account, "big_meta", target_jpeg, metadata=metadata)
        assert server.call("GetImage", account.auth(identifier="big_meta"))["metadata"] == metadata

    def test_empty_metadata_means_none(self, server, account, target_jpeg):
        add_ok(server, account, "no_meta", target_jpeg, metadata="")
        assert server.call("GetImage", account.auth(identifier="no_meta"))["metadata"] is None

    @pytest.mark.parametrize("identifier", ["abc", "A" * 50, "x@y.z", "Poster_01.v2", "123"])
    def test_identifier_rule_boundaries_accepted(self, server, account, target_jpeg, identifier):
        add_ok(server, account, identifier, target_jpeg)
        assert stored_identifiers(server, account.channel) == [identifier]

    def test_identifiers_are_case_sensitive(self, server, account, target_jpeg):
        add_ok(server, account, "Case", target_jpeg)
        add_ok(server, account, "case", target_jpeg)
        assert stored_identifiers(server, account.channel) == ["Case", "case"]

    def test_same_identifier_in_two_channels(self, server, account, other_account, target_jpeg):
        add_ok(server, account, "shared", target_jpeg)
        add_ok(server, other_account, "shared", target_jpeg)


class TestPrecedence:
    """Each case breaks two rules; the answer is the one earlier in the documented order."""

    def test_20005_not_multipart_beats_wrong_key(self, server, account, target_jpeg):
        with nothing_stored(server, account):
            expect(server, 20005, account.auth(identifier="abc", secretkey="wrong"))
            # urlencoded, even with every field right
            expect(server, 20005, account.auth(identifier="abc"))
            # a raw JPEG body
            expect(server, 20005, None, content=target_jpeg, headers={"content-type": "image/jpeg"})
            # JSON
            expect(server, 20005, None, json=account.auth(identifier="abc"))

    def test_20005_image_as_text_field_beats_wrong_key(self, server, account):
        with nothing_stored(server, account):
            data = account.auth(identifier="abc", secretkey="wrong", image="/9j/4AAQSkZJRgABAQ")
            # a multipart body without any file part
            expect(server, 20005, data, files={"other": ("x.jpg", b"\xff\xd8\xff", "image/jpeg")})

    def test_20005_file_in_another_field(self, server, account, target_jpeg):
        with nothing_stored(server, account):
            expect(server, 20005, account.auth(identifier="abc"), files={"photo": ("a.jpg", target_jpeg)})

    def test_20001_wrong_key_beats_missing_channel(self, server, account, target_jpeg):
        with nothing_stored(server, account):
            data = {"username": account.username, "secretkey": "wrong", "identifier": "abc"}
            expect(server, 20001, data, files=jpeg(target_jpeg))

    @pytest.mark.parametrize(
        "case",
        [
            "no credentials",
            "username only",
            "key only",
            "empty key",
            "empty username",
            "key with a trailing space",
            "key in the wrong case",
            "unknown user",
            "username with a trailing space",
            "another user's valid key",
        ],
    )
    def test_20001_any_credential_problem(self, server, account, other_account, target_jpeg, case):
        user, key = account.username, account.secretkey
        credentials = {
            "no credentials": {},
            "username only": {"username": user},
            "key only": {"secretkey": key},
            "empty key": {"username": user, "secretkey": ""},
            "empty username": {"username": "", "secretkey": key},
            "key with a trailing space": {"username": user, "secretkey": key + " "},
            "key in the wrong case": {"username": user, "secretkey": key.swapcase()},
            "unknown user": {"username": "nobody-at-all", "secretkey": key},
            "username with a trailing space": {"username": user + " ", "secretkey": key},
            "another user's valid key": {"username": user, "secretkey": other_account.secretkey},
        }[case]
        data = {"channel": account.channel, "identifier": "abc", **credentials}
        with nothing_stored(server, account):
            expect(server, 20001, data, files=jpeg(target_jpeg))

    def test_20001_credentials_sent_as_files(self, server, account, target_jpeg):
        files = {
            "image": ("a.jpg", target_jpeg, "image/jpeg"),
            "secretkey": ("key.txt", account.secretkey.encode(), "text/plain"),
        }
        data = {"username": account.username, "channel": account.channel, "identifier": "abc"}
        with nothing_stored(server, account):
            expect(server, 20001, data, files=files)

    def test_20002_missing_identifier_beats_unknown_channel(self, server, account, target_jpeg):
        with nothing_stored(server, account):
            expect(server, 20002, account.auth(channel="no-such-channel"), files=jpeg(target_jpeg))
            expect(
                server, 20002, account.auth(channel="no-such-channel", identifier=""), files=jpeg(target_jpeg)
            )

    def test_20002_missing_channel(self, server, account, target_jpeg):
        data = {"username": account.username, "secretkey": account.secretkey, "identifier": "abc"}
        with nothing_stored(server, account):
            expect(server, 20002, data, files=jpeg(target_jpeg))
            expect(server, 20002, {**data, "channel": ""}, files=jpeg(target_jpeg))

    def test_20002_bad_metadata_beats_unknown_channel_and_bad_identifier(self, server, account, target_jpeg):
        data = account.auth(channel="no-such-channel", identifier="x", metadata="{not json")
        with nothing_stored(server, account):
            expect(server, 20002, data, files=jpeg(target_jpeg))

    def test_20003_unknown_channel_beats_bad_identifier(self, server, account, target_jpeg):
        with nothing_stored(server, account):
            expect(
                server,
                20003,
                account.auth(channel="no-such-channel", identifier="x"),
                files=jpeg(target_jpeg),
            )
            # A name that breaks the channel naming rule cannot exist either.
            expect(
                server, 20003, account.auth(channel="bad name/..", identifier="abc"), files=jpeg(target_jpeg)
            )

    def test_20004_other_users_channel_beats_bad_identifier(
        self, server, account, other_account, target_jpeg
    ):
        with nothing_stored(server, other_account):
            expect(
                server,
                20004,
                account.auth(channel=other_account.channel, identifier="x"),
                files=jpeg(target_jpeg),
            )
            expect(
                server, 20004, account.auth(channel=other_account.channel, identifier="ok1"), files=jpeg(b"x")
            )

    def test_20010_bad_identifier_beats_quota_size_and_format(self, server, target_jpeg):
        full = server.new_account(f"full{id(self)}", quota=0)
        with nothing_stored(server, full):
            expect(server, 20010, full.auth(identifier="x"), files=jpeg(images.oversize_garbage(6 * MiB)))

    def test_20016_taken_beats_quota_full(self, server, account, target_jpeg):
        add_ok(server, account, "taken", target_jpeg)
        server.operator.set_quota(account.channel, 1)
        with nothing_stored(server, account):
            expect(
                server, 20016, account.auth(identifier="taken"), files=jpeg(images.oversize_garbage(6 * MiB))
            )
            expect(server, 20012, account.auth(identifier="fresh"), files=jpeg(target_jpeg))

    def test_20012_quota_full_beats_oversize(self, server):
        full = server.new_account(f"zero{id(self)}", quota=0)
        with nothing_stored(server, full):
            expect(server, 20012, full.auth(identifier="abc"), files=jpeg(images.oversize_garbage(6 * MiB)))

    def test_20006_oversize_beats_garbage(self, server, account):
        with nothing_stored(server, account):
            expect(
                server, 20006, account.auth(identifier="abc"), files=jpeg(images.oversize_garbage(6 * MiB))
            )

    def test_20007_garbage_beats_feature_check(self, server, account):
        with nothing_stored(server, account):
            expect(server, 20007, account.auth(identifier="abc"), files=jpeg(images.TEXT_FILE))

    def test_20013_blank_image(self, server, account):
        with nothing_stored(server, account):
            expect(server, 20013, account.auth(identifier="abc"), files=jpeg(images.blank()))
            expect(server, 20013, account.auth(identifier="abc"), files=jpeg(images.blank("jpeg")))


class TestQuota:
    def test_fills_to_quota_then_20012(self, server, target_jpeg, target_png):
        limited = server.new_account(f"q{id(self)}", quota=1)
        add_ok(server, limited, "first", target_jpeg)
        with nothing_stored(server, limited):
            expect(server, 20012, limited.auth(identifier="second"), files=jpeg(target_png))
        server.call("RemoveImage", limited.auth(identifier="first"))
        add_ok(server, limited, "second", target_png)

    def test_concurrent_adds_never_pass_the_quota(self, server, target_jpeg, target_png):
        limited = server.new_account(f"r{id(self)}", quota=3)
        add_ok(server, limited, "first", target_jpeg)
        names = [f"rush{n}" for n in range(6)]
        with ThreadPoolExecutor(len(names)) as pool:
            codes = list(
                pool.map(
                    lambda name: server.call(
                        "AddImage", limited.auth(identifier=name), files=jpeg(target_png)
                    )["returncode"],
                    names,
                )
            )
        assert sorted(codes) == [0, 0, 20012, 20012, 20012, 20012]
        assert len(stored_identifiers(server, limited.channel)) == total_count(server, limited) == 3
        # The count follows replacements (no change) and removals (one less), and frees the quota.
        assert (
            server.call("UpdateImage", limited.auth(identifier="first"), files=jpeg(target_png))["returncode"]
            == 0
        )
        assert total_count(server, limited) == 3
        server.call("RemoveImage", limited.auth(identifier="first"))
        assert len(stored_identifiers(server, limited.channel)) == total_count(server, limited) == 2
        add_ok(server, limited, "again", target_jpeg)
        assert total_count(server, limited) == 3


class TestHostileUploads:
    @pytest.mark.parametrize(
        ("name", "code"),
        [
            ("truncated_jpeg", 20007),
            ("truncated_png", 20007),
            ("text_as_jpg", 20007),
            ("empty", 20007),
            ("png_bomb", 20006),
            ("jpeg_magic_only", 20007),
            ("gif", 20007),
        ],
    )
    def test_rejected_and_nothing_stored(
        self, server, account, target_jpeg, target_png, name, code, png_bomb
    ):
        payload = {
            "truncated_jpeg": images.truncated(target_jpeg),
            "truncated_png": images.truncated(target_png),
            "text_as_jpg": images.TEXT_FILE,
            "empty": b"",
            "png_bomb": png_bomb,
            "jpeg_magic_only": b"\xff\xd8\xff\xe0" + b"\x00" * 100,
            "gif": b"GIF89a" + b"\x00" * 100,
        }[name]
        with nothing_stored(server, account):
            expect(server, code, account.auth(identifier="hostile"), files=jpeg(payload, "photo.jpg"))
        assert server.call("GetImages", account.auth())["returncode"] == 0

    def test_format_is_sniffed_not_taken_from_the_name(self, server, account, target_png):
        files = {"image": ("picture.gif", target_png, "text/plain")}
        assert server.call("AddImage", account.auth(identifier="sniffed"), files=files)["returncode"] == 0
        assert server.call("GetImage", account.auth(identifier="sniffed"))["returncode"] == 0

    def test_upload_at_exactly_the_limit_is_not_20006(self, server, account):
        expect(server, 20007, account.auth(identifier="abc"), files=jpeg(images.oversize_garbage(5 * MiB)))
        expect(
            server, 20006, account.auth(identifier="abc"), files=jpeg(images.oversize_garbage(5 * MiB + 1))
        )

    @pytest.mark.parametrize(
        "metadata",
        ["{not json", "NaN", '{"a": NaN}', "Infinity", "{'a': 1}", '{"a": 1} trailing', "[" * 5000],
    )
    def test_bad_metadata_is_20002(self, server, account, target_jpeg, metadata):
        with nothing_stored(server, account):
            expect(server, 20002, account.auth(identifier="meta", metadata=metadata), files=jpeg(target_jpeg))

    @pytest.mark.parametrize("size", [64 * 1024 + 1, 300 * 1024, 2 * MiB])
    def test_metadata_over_64_kib_is_20002(self, server, account, target_jpeg, size):
        metadata = json.dumps("x" * (size - 2))
        with nothing_stored(server, account):
            expect(server, 20002, account.auth(identifier="meta", metadata=metadata), files=jpeg(target_jpeg))

    def test_oversized_metadata_with_wrong_key_is_still_20001(self, server, account, target_jpeg):
        metadata = json.dumps("x" * (300 * 1024))
        data = account.auth(identifier="meta", metadata=metadata, secretkey="wrong")
        expect(server, 20001, data, files=jpeg(target_jpeg))

    def test_metadata_sent_as_a_file_is_20002(self, server, account, target_jpeg):
        files = {
            "image": ("a.jpg", target_jpeg, "image/jpeg"),
            "metadata": ("meta.json", b'{"title": "x"}', "application/json"),
        }
        with nothing_stored(server, account):
            expect(server, 20002, account.auth(identifier="meta"), files=files)

    @pytest.mark.parametrize(
        "identifier",
        [
            "ab",
            "a" * 51,
            "has space",
            "café",
            "\uff46\uff55\uff4c\uff4c",
            "١٢٣",
            "dash-ed",
            "new\nline",
            "abc\n",
            "../../x",
            "a/b/c",
        ],
    )
    def test_bad_identifiers_are_20010(self, server, account, target_jpeg, identifier):
        with nothing_stored(server, account):
            expect(server, 20010, account.auth(identifier=identifier), files=jpeg(target_jpeg))

    @both_blob_stores
    def test_taken_identifier_is_20016_and_keeps_the_first(self, server, account, target_jpeg, target_png):
        add_ok(server, account, "dup", target_jpeg, metadata='"first"')
        with nothing_stored(server, account):
            expect(server, 20016, account.auth(identifier="dup", metadata='"second"'), files=jpeg(target_png))
        assert server.call("GetImage", account.auth(identifier="dup"))["metadata"] == '"first"'

    def test_server_survives_the_whole_barrage(self, server, account, target_jpeg):
        add_ok(server, account, "after_barrage", target_jpeg)


@both_blob_stores
class TestAtomicityAfterFailure:
    def test_failed_add_leaves_no_index_entry(self, server, account, target_jpeg, target_photo):
        """A target refused at the last step (quota) is not findable and does not block a later add."""
        server.operator.set_quota(account.channel, 0)
        with nothing_stored(server, account, photo=target_photo):
            expect(server, 20012, account.auth(identifier="late"), files=jpeg(target_jpeg))
        server.operator.set_quota(account.channel, 10)
        add_ok(server, account, "late", target_jpeg)
        assert find_in(server, account, target_photo)["identifier"] == "late"


class TestDegenerateTargets:
    @pytest.mark.parametrize("kind", ["blank", "gradient", "checkerboard", "tiled", "noise"])
    def test_too_little_usable_texture_is_20013(self, server, account, kind):
        picture = {
            "blank": imagegen.blank(),
            "gradient": imagegen.gradient(),
            "checkerboard": imagegen.checkerboard(),
            "tiled": imagegen.tiled(),
            "noise": imagegen.noise(),
        }[kind]
        with nothing_stored(server, account):
            expect(server, 20013, account.auth(identifier=kind), files=jpeg(imagegen.encode(picture, "png")))


class TestSimilar:
    """``similar`` (extension): existing targets of the channel that the new image matches."""

    def test_the_same_picture_again(self, server, account, target_jpeg, target_png):
        assert add_ok(server, account, "first", target_jpeg)["similar"] == []
        (entry,) = add_ok(server, account, "again", target_png)["similar"]
        assert entry["identifier"] == "first"
        assert 0 < entry["score"] <= 1
        # The add still succeeds: both are stored.
        assert stored_identifiers(server, account.channel) == ["again", "first"]

    def test_both_of_two_twins(self, server, account, target_jpeg, target_png, target_photo):
        add_ok(server, account, "twin1", target_jpeg)
        add_ok(server, account, "twin2", target_png)
        # The twins fit the same place in a photo: a search answers neither of them ...
        assert "identifier" not in find_in(server, account, target_photo)
        # ... and that is why the third copy must name both.
        similar = add_ok(server, account, "third", target_jpeg)["similar"]
        assert sorted(entry["identifier"] for entry in similar) == ["twin1", "twin2"]
        assert similar[0]["score"] >= similar[1]["score"]

    def test_best_first(self, server, account, target_array):
        closer = target_array.copy()
        closer[:40] = 255  # a strip covered: still the same poster, a little less of it
        farther = target_array.copy()
        farther[: target_array.shape[0] // 2] = 255  # half of it covered
        add_ok(server, account, "half", imagegen.encode(farther))
        add_ok(server, account, "most", imagegen.encode(closer))
        similar = add_ok(server, account, "whole", imagegen.encode(target_array))["similar"]
        assert [entry["identifier"] for entry in similar] == ["most", "half"]
        assert similar[0]["score"] >= similar[1]["score"]

    def test_only_the_same_channel(self, server, account, other_account, target_jpeg):
        add_ok(server, other_account, "theirs", target_jpeg)
        creds = {"username": account.username, "secretkey": account.secretkey}
        other_channel = f"{account.channel}.b"
        assert server.call("CreateChannel", {**creds, "channel": other_channel})["returncode"] == 0
        add_ok(server, Account(account.username, account.secretkey, other_channel), "mine", target_jpeg)
        assert add_ok(server, account, "here", target_jpeg)["similar"] == []
