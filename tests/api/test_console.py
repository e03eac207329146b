"""The console's server side over HTTP: GetImages extensions, GetImageDetail, thumbnails, pages."""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from tests import imagegen
from tests.api.helpers import add_ok
from tests.server import Account, ServerProcess


@pytest.fixture(scope="module")
def poster_jpeg() -> bytes:
    return imagegen.encode(imagegen.poster(81))


class TestGetImagesExtensions:
    def test_prefix_is_case_sensitive_literal_and_counts_only_matches(
        self, server: ServerProcess, account: Account, poster_jpeg: bytes
    ) -> None:
        for ident in ("ab_1", "abX1", "aBc", "zzz"):
            add_ok(server, account, ident, poster_jpeg)
        body = server.call("GetImages", account.auth(prefix="ab_"))
        # "_" is no wildcard and "B" is not "b": SQL LIKE would have returned three.
        assert [i["identifier"] for i in body["images"]] == ["ab_1"]
        assert body["totalcount"] == 1
        assert server.call("GetImages", account.auth(prefix="ab"))["totalcount"] == 2
        assert server.call("GetImages", account.auth(prefix=""))["totalcount"] == 4

    def test_bad_prefix_is_20002(self, server: ServerProcess, account: Account) -> None:
        assert server.call("GetImages", account.auth(prefix="a b"))["returncode"] == 20002
        assert server.call("GetImages", account.auth(prefix="a" * 51))["returncode"] == 20002

    def test_items_carry_an_imageurl_serving_the_original(
        self, server: ServerProcess, account: Account, poster_jpeg: bytes
    ) -> None:
        add_ok(server, account, "withurl", poster_jpeg)
        (item,) = server.call("GetImages", account.auth())["images"]
        original = httpx.get(server.url + item["imageurl"])
        assert original.content == poster_jpeg


class TestThumbnail:
    def test_downscaled_jpeg_with_cache_headers(
        self, server: ServerProcess, account: Account, poster_jpeg: bytes
    ) -> None:
        add_ok(server, account, "thumbed", poster_jpeg)
        url = server.url + server.call("GetImages", account.auth())["images"][0]["imageurl"] + "/thumbnail"
        response = httpx.get(url, params={"size": 128})
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (128, 96)  # 480x640 poster, long side 128
        again = httpx.get(url, params={"size": 128}, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        # Sizes snap to a fixed set, and never upscale.
        big = cv2.imdecode(np.frombuffer(httpx.get(url, params={"size": 5000}).content, np.uint8), 1)
        assert big is not None and big.shape[:2] == (640, 480)

    def test_unknown_or_malformed_key_is_404(self, server: ServerProcess) -> None:
        assert httpx.get(f"{server.url}/files/{'0' * 32}/thumbnail").status_code == 404
        assert httpx.get(f"{server.url}/files/..%2f..%2fetc/thumbnail").status_code == 404


class TestGetImageDetail:
    def test_keypoints_and_rating_inputs_agree_with_the_stored_rating(
        self, server: ServerProcess, account: Account, poster_jpeg: bytes
    ) -> None:
        added = add_ok(server, account, "detailed", poster_jpeg)
        body = server.call("GetImageDetail", account.auth(identifier="detailed"))
        assert body["returncode"] == 0
        assert (body["level"], body["matchratio"]) == (added["level"], added["matchratio"])
        rating = body["rating"]
        keypoints = body["keypoints"]
        assert len(keypoints) == rating["keypoints"] >= 60
        assert all(0 <= x <= body["width"] and 0 <= y <= body["height"] for x, y, _ in keypoints)
        counts = [c for _, _, c in keypoints]
        assert all(0 <= c <= rating["views"] for c in counts)
        # Each view's re-found features are distinct keypoints, so the per-keypoint counts add up to them.
        assert sum(counts) == sum(rating["refound_per_view"])
        # The same self-test as AddImage (features are stored quantised, so allow a hair of difference).
        assert rating["mean_refound"] / rating["keypoints"] == pytest.approx(body["matchratio"], abs=0.01)
        bands = [(b["level"], b["min_refound"]) for b in rating["bands"]]
        assert bands == [(5, 64), (4, 32), (3, 16), (2, 8), (1, 4)]
        assert all(0 <= b["found_share"] <= 1 for b in rating["bands"])
        assert rating["min_refound"] == 4 and rating["mean_refound"] >= 4

    def test_owner_only_and_result_codes(
        self, server: ServerProcess, account: Account, other_account: Account, poster_jpeg: bytes
    ) -> None:
        add_ok(server, account, "private", poster_jpeg)
        wrong_key = {**account.auth(identifier="private"), "secretkey": "nope"}
        assert server.call("GetImageDetail", wrong_key)["returncode"] == 20001
        other = {**other_account.auth(identifier="private"), "channel": account.channel}
        assert server.call("GetImageDetail", other)["returncode"] == 20004
        assert server.call("GetImageDetail", account.auth(identifier="missing"))["returncode"] == 20014
        assert server.call("GetImageDetail", account.auth())["returncode"] == 20002


class TestStaticConsole:
    def test_pages_are_served_with_a_strict_content_security_policy(self, server: ServerProcess) -> None:
        redirect = httpx.get(f"{server.url}/console")
        assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
        for path in ("/console/", "/console/app.js", "/console/webar/"):
            response = httpx.get(server.url + path)
            assert response.status_code == 200, path
            assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "javascript" in httpx.get(f"{server.url}/console/app.js").headers["content-type"]


def test_favicon_is_the_logo(server: ServerProcess) -> None:
    """Browsers ask for /favicon.ico on pages that name no icon; a 404 there is logged as a page error."""
    response = httpx.get(f"{server.url}/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.content.lstrip().startswith(b"<svg") or b"<svg" in response.content[:200]
