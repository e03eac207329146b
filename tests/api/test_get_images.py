"""GetImages: byte-ordered identifiers, paging, totalcount."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.api.helpers import seed_rows
from tests.server import Account, ServerProcess

# Written in byte order: "." < digits < "@" < upper case < "_" < lower case.
BYTE_ORDERED = [
    "...",
    "0_a",
    "123",
    "9zz",
    "@at",
    "ABC",
    "Z.z",
    "Z_z",
    "Zzz",
    "_ab",
    "abc",
    "b@b",
    "b_b",
    "zz.",
]


def list_images(server: ServerProcess, account: Account, **fields: Any) -> dict[str, Any]:
    body = server.call("GetImages", account.auth(**fields))
    assert body["returncode"] == 0, body
    return body


class TestOrdering:
    def test_byte_order(self, server, account):
        assert sorted(BYTE_ORDERED, key=lambda s: s.encode()) == BYTE_ORDERED
        shuffled = BYTE_ORDERED[:]
        random.Random(5).shuffle(shuffled)
        seed_rows(server, account, shuffled)
        body = list_images(server, account)
        assert [image["identifier"] for image in body["images"]] == BYTE_ORDERED
        assert body["totalcount"] == len(BYTE_ORDERED)

    def test_entry_fields(self, server, account, target_jpeg):
        server.call(
            "AddImage",
            account.auth(identifier="real", metadata='{"k": "v"}'),
            files={"image": ("a.jpg", target_jpeg, "image/jpeg")},
        )
        (image,) = list_images(server, account)["images"]
        assert set(image) == {"identifier", "metadata", "matchratio", "level", "imageurl"}
        assert image["identifier"] == "real"
        assert image["metadata"] == '{"k": "v"}'
        assert image["level"] in range(1, 6)
        assert 0 <= image["matchratio"] <= 1

    def test_empty_channel(self, server, account):
        body = list_images(server, account)
        assert (body["totalcount"], body["images"]) == (0, [])


class TestPaging:
    @pytest.fixture
    def many(self, server, account) -> list[str]:
        identifiers = [f"id{n:04d}" for n in range(1, 251)]
        seed_rows(server, account, identifiers)
        return identifiers

    def test_default_page_is_100(self, server, account, many):
        body = list_images(server, account)
        assert body["totalcount"] == 250
        assert [i["identifier"] for i in body["images"]] == many[:100]

    def test_position_and_count(self, server, account, many):
        body = list_images(server, account, position="10", count="5")
        assert [i["identifier"] for i in body["images"]] == many[10:15]
        assert body["totalcount"] == 250
        assert [
            i["identifier"] for i in list_images(server, account, position="245", count="10")["images"]
        ] == (many[245:])

    def test_pages_cover_everything_once(self, server, account, many):
        seen: list[str] = []
        for position in range(0, 250, 33):
            seen += [
                i["identifier"]
                for i in list_images(server, account, position=str(position), count="33")["images"]
            ]
        assert seen == many

    def test_count_1000_allowed(self, server, account, many):
        assert len(list_images(server, account, count="1000")["images"]) == 250

    @pytest.mark.parametrize("position", ["250", "251", "100000", "999999999999999999"])
    def test_past_the_end_is_an_empty_list(self, server, account, many, position):
        body = list_images(server, account, position=position)
        assert (body["totalcount"], body["images"]) == (250, [])

    def test_empty_values_mean_defaults(self, server, account, many):
        assert len(list_images(server, account, position="", count="")["images"]) == 100


class TestErrors:
    @pytest.mark.parametrize(
        "fields",
        [
            {"position": "-1"},
            {"position": "abc"},
            {"position": "1.5"},
            {"position": " 1"},
            {"position": "\uff11"},
            {"count": "0"},
            {"count": "1001"},
            {"count": "-5"},
            {"count": "ten"},
        ],
    )
    def test_bad_paging_is_20002(self, server, account, fields):
        assert server.call("GetImages", account.auth(**fields))["returncode"] == 20002
        assert server.call("GetImages", account.auth())["returncode"] == 0

    def test_precedence(self, server, account, other_account):
        cases = [
            (20001, {**account.auth(position="-1"), "secretkey": "wrong"}),
            (20001, {"channel": account.channel}),
            (20002, account.auth(channel="no-such-channel", position="-1")),
            (20002, {"username": account.username, "secretkey": account.secretkey}),
            (20003, account.auth(channel="no-such-channel")),
            (20004, account.auth(channel=other_account.channel)),
        ]
        for code, data in cases:
            assert server.call("GetImages", data)["returncode"] == code, data

    def test_multipart_works_too(self, server, account):
        body = server.call("GetImages", account.auth(), files={"unused": ("x.txt", b"ignored", "text/plain")})
        assert body["returncode"] == 0
