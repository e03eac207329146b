"""FindImage: with and without channel, geometry of the answer, maxresults, codes and their precedence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests import imagegen
from tests.api import images
from tests.api.helpers import add_ok, find, find_in, jpeg

MiB = 1024 * 1024


class TestWithChannel:
    def test_match_fields(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg, metadata='{"t": 1}')
        body = find_in(server, account, target_photo)
        assert body["returncode"] == 0
        assert body["identifier"] == "poster"
        assert body["channel"] == account.channel
        assert body["metadata"] == '{"t": 1}'
        assert 0 < body["score"] <= 1
        assert len(body["corners"]) == 4
        assert "level" not in body
        assert "results" not in body

    def test_photo_of_nothing_enrolled(self, server, account, target_jpeg, unrelated_photo):
        add_ok(server, account, "poster", target_jpeg)
        assert find_in(server, account, unrelated_photo) == {"returncode": 0, "message": "success"}

    def test_empty_channel(self, server, account, target_photo):
        assert find_in(server, account, target_photo) == {"returncode": 0, "message": "success"}

    def test_picks_the_right_one_of_two(
        self, server, account, target_jpeg, second_jpeg, target_photo, second_photo
    ):
        add_ok(server, account, "first", target_jpeg)
        add_ok(server, account, "second", second_jpeg)
        assert find_in(server, account, target_photo)["identifier"] == "first"
        assert find_in(server, account, second_photo)["identifier"] == "second"

    def test_only_that_channel_is_searched(self, server, account, target_jpeg, target_photo):
        server.operator.create_channel(f"{account.channel}-2", account.username)
        add_ok(server, account, "elsewhere", target_jpeg)
        assert "identifier" not in find(server, account, target_photo, channel=f"{account.channel}-2")

    def test_png_photo(self, server, account, target_jpeg, target_array):
        add_ok(server, account, "poster", target_jpeg)
        photo, _ = images.photo(target_array, seed=21)
        decoded = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        png = imagegen.encode(decoded, "png")
        assert find_in(server, account, png)["identifier"] == "poster"


class TestGeometry:
    @pytest.mark.parametrize("rotation", [0, 90, 180, 270])
    def test_rotated_photos_and_corners(self, server, account, target_jpeg, target_array, rotation):
        add_ok(server, account, "poster", target_jpeg)
        photo, homography = images.photo(target_array, seed=30 + rotation, rotation_deg=rotation, tilt_deg=15)
        body = find_in(server, account, photo)
        assert body["identifier"] == "poster"
        height, width = target_array.shape[:2]
        expected = images.project(homography, width, height)
        corners = np.array(body["corners"], np.float64)
        # Clockwise from the target's top-left: each corner near where the homography put that corner.
        assert np.abs(corners - expected).max() < 15, (corners, expected)

    def test_score_is_monotone_in_confidence(self, server, account, target_jpeg, target_array):
        add_ok(server, account, "poster", target_jpeg)
        easy, _ = images.photo(target_array, seed=40, tilt_deg=0, rotation_deg=0, scale=0.9)
        # Steep and small: still found, but with far fewer agreeing points than the easy photo.
        hard, _ = images.photo(target_array, seed=41, tilt_deg=55, rotation_deg=0, scale=0.3)
        easy_body = find_in(server, account, easy)
        hard_body = find_in(server, account, hard)
        assert easy_body["identifier"] == hard_body["identifier"] == "poster"
        assert 0 < hard_body["score"] < easy_body["score"] <= 1


class TestWithoutChannel:
    def test_searches_all_own_channels_and_rates_the_photo(self, server, account, target_jpeg, target_photo):
        second = f"{account.channel}-b"
        server.operator.create_channel(second, account.username)
        server.call("AddImage", account.auth(channel=second, identifier="in_b"), files=jpeg(target_jpeg))
        body = find(server, account, target_photo)
        assert body["identifier"] == "in_b"
        assert body["channel"] == second
        assert body["level"] in range(1, 6)

    def test_no_match_still_has_level(self, server, account, unrelated_photo):
        body = find(server, account, unrelated_photo)
        assert "identifier" not in body
        assert body["level"] in range(1, 6)

    def test_empty_channel_field_means_no_channel(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg)
        body = find(server, account, target_photo, channel="")
        assert (body["identifier"], body["level"] in range(1, 6)) == ("poster", True)

    def test_user_without_channels(self, server, target_photo):
        key = server.operator.create_user(f"lonely{id(self)}")
        body = server.call(
            "FindImage", {"username": f"lonely{id(self)}", "secretkey": key}, files=jpeg(target_photo)
        )
        assert body["returncode"] == 0 and "identifier" not in body


class TestMaxResults:
    @pytest.fixture
    def both(self, server, account, target_jpeg, second_jpeg, target_array, second_array) -> bytes:
        add_ok(server, account, "left", target_jpeg)
        add_ok(server, account, "right", second_jpeg)
        scene = images.side_by_side(target_array, second_array)
        return images.photo(scene, seed=50, tilt_deg=10, rotation_deg=5, scale=0.9, size=(1400, 700))[0]

    def test_two_targets_in_one_photo(self, server, account, both):
        body = find_in(server, account, both, maxresults="5")
        assert {entry["identifier"] for entry in body["results"]} == {"left", "right"}
        assert body["identifier"] == body["results"][0]["identifier"]
        scores = [entry["score"] for entry in body["results"]]
        assert scores == sorted(scores, reverse=True)
        for entry in body["results"]:
            assert set(entry) >= {"identifier", "channel", "metadata", "score", "corners"}

    def test_default_is_one_result_without_list(self, server, account, both):
        body = find_in(server, account, both)
        assert body["identifier"] in {"left", "right"}
        assert "results" not in body

    def test_maxresults_caps_the_list(self, server, account, both):
        assert len(find_in(server, account, both, maxresults="1").get("results", [1])) == 1
        assert len(find_in(server, account, both, maxresults="10")["results"]) == 2

    def test_no_match_with_maxresults(self, server, account, both, unrelated_photo):
        body = find_in(server, account, unrelated_photo, maxresults="3")
        assert "identifier" not in body
        assert body.get("results", []) == []

    @pytest.mark.parametrize("value", ["0", "11", "x", "-1", "1.5", "٣"])
    def test_out_of_range_is_20002(self, server, account, target_photo, value):
        assert find_in(server, account, target_photo, maxresults=value)["returncode"] == 20002


class TestCodes:
    def test_precedence(self, server, account, other_account, target_photo):
        big = images.oversize_garbage(10 * MiB + 1)
        auth = {"username": account.username, "secretkey": account.secretkey}
        multipart_cases = [
            (20001, {"username": account.username, "secretkey": "wrong", "maxresults": "0"}, big),
            (20001, {"channel": account.channel}, big),
            (20002, {**auth, "channel": "no-such-channel", "maxresults": "99"}, big),
            (20003, {**auth, "channel": "no-such-channel"}, big),
            (20004, {**auth, "channel": other_account.channel}, big),
            (20006, {**auth, "channel": account.channel}, big),
            (20007, {**auth, "channel": account.channel}, images.TEXT_FILE),
            (20013, {**auth, "channel": account.channel}, images.blank()),
            (20013, auth, images.blank("jpeg")),
        ]
        for code, data, payload in multipart_cases:
            body = server.call("FindImage", data, files=jpeg(payload))
            assert body["returncode"] == code, (data, body)
            assert set(body) == {"returncode", "message"}
        # not multipart: 20005 before anything else
        assert server.call("FindImage", {"username": "x", "secretkey": "wrong"})["returncode"] == 20005
        no_file = server.call("FindImage", {**auth, "image": "text"}, files={"x": ("a", b"b", "text/plain")})
        assert no_file["returncode"] == 20005

    @pytest.mark.parametrize(
        ("name", "code"), [("truncated", 20007), ("empty", 20007), ("bomb", 20006), ("text", 20007)]
    )
    def test_hostile_photos(self, server, account, target_photo, png_bomb, name, code):
        payload = {
            "truncated": images.truncated(target_photo),
            "empty": b"",
            "bomb": png_bomb,
            "text": images.TEXT_FILE,
        }[name]
        assert find_in(server, account, payload)["returncode"] == code
        assert find_in(server, account, target_photo)["returncode"] == 0

    def test_find_limit_is_10_mib(self, server, account):
        assert find_in(server, account, images.oversize_garbage(10 * MiB))["returncode"] == 20007
        body = find_in(server, account, images.oversize_garbage(10 * MiB + 1))
        assert body["returncode"] == 20006
        assert body["message"] == (
            "file size limit exceeded: image is 10485761 bytes, over the FindImage limit of 10485760 bytes "
            "(10 MiB)"
        )


class TestTinyImages:
    @pytest.mark.parametrize("size", [1, 2, 16])
    def test_too_small_to_describe_is_20013(self, server, account, size):
        tiny = imagegen.encode(imagegen.noise(width=size, height=size), "png")
        assert find_in(server, account, tiny)["returncode"] == 20013
        assert find(server, account, tiny)["returncode"] == 20013
        body = server.call("AddImage", account.auth(identifier="tiny"), files=jpeg(tiny, "tiny.png"))
        assert body["returncode"] == 20013


class TestPhonePhotos:
    def test_a_12_megapixel_photo_as_taken_is_searched(self, server, account, target_jpeg, target_array):
        add_ok(server, account, "poster", target_jpeg)
        photo = images.phone_photo(target_array, seed=21)
        assert 3 * MiB < len(photo) < 10 * MiB
        body = find_in(server, account, photo)
        assert body["returncode"] == 0 and body["identifier"] == "poster"
        # Corners are in the photo's own (full-size) pixels, though it was decoded at reduced size.
        assert max(x for x, _ in body["corners"]) > 1000
