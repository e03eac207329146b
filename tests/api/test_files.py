"""The files behind ``imageurl``: caching that lets a removal take effect, HEAD, stored previews, and the
per-address budget of these anonymous requests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest

from tests.api.helpers import add_ok, both_blob_stores
from tests.backends import Backend
from tests.server import Account, ServerProcess

_addresses = (f"127.0.1.{n}" for n in itertools.count(2))


def imageurl(server: ServerProcess, account: Account, identifier: str) -> str:
    url: str = server.call("GetImage", account.auth(identifier=identifier))["imageurl"]
    return server.url + url


def previews(server: ServerProcess, url: str) -> set[str]:
    key = url.rsplit("/", 1)[-1]
    return {path.name for path in (server.data_dir / "thumbnails").glob(f"*/{key}-*.jpg")}


@both_blob_stores
class TestCaching:
    def test_short_lived_and_revalidated(self, server: ServerProcess, account: Account, target_jpeg) -> None:
        add_ok(server, account, "cached", target_jpeg)
        url = imageurl(server, account, "cached")
        for response in (httpx.get(url), httpx.get(url + "/thumbnail")):
            assert response.status_code == 200
            directives = {d.strip() for d in response.headers["cache-control"].split(",")}
            assert "immutable" not in directives
            assert "must-revalidate" in directives
            (max_age,) = [int(d.split("=")[1]) for d in directives if d.startswith("max-age=")]
            assert 0 < max_age <= 300

    def test_a_removed_targets_file_is_gone_even_for_a_revalidating_cache(
        self, server: ServerProcess, account: Account, target_jpeg
    ) -> None:
        add_ok(server, account, "removed", target_jpeg)
        url = imageurl(server, account, "removed")
        original, preview = httpx.get(url), httpx.get(url + "/thumbnail")
        server.call("RemoveImage", account.auth(identifier="removed"))
        assert httpx.get(url, headers={"If-None-Match": original.headers["etag"]}).status_code == 404
        stale = {"If-None-Match": preview.headers["etag"]}
        assert httpx.get(url + "/thumbnail", headers=stale).status_code == 404
        assert previews(server, url) == set()


@both_blob_stores
class TestHead:
    def test_head_answers_like_get_without_the_body(
        self, server: ServerProcess, account: Account, target_jpeg
    ) -> None:
        add_ok(server, account, "headed", target_jpeg)
        url = imageurl(server, account, "headed")
        head = httpx.head(url)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == "image/jpeg"
        assert int(head.headers["content-length"]) == len(target_jpeg)
        assert head.headers["etag"] == httpx.get(url).headers["etag"]
        preview = httpx.head(url + "/thumbnail", params={"size": 64})
        assert preview.status_code == 200 and preview.content == b""
        full = httpx.get(url + "/thumbnail", params={"size": 64})
        assert int(preview.headers["content-length"]) == len(full.content)
        assert httpx.head(f"{server.url}/files/{'0' * 32}").status_code == 404
        assert httpx.head(f"{server.url}/files/{'0' * 32}/thumbnail").status_code == 404


@both_blob_stores
class TestStoredPreviews:
    def test_made_when_the_target_is_stored_and_removed_with_it(
        self, server: ServerProcess, account: Account, target_jpeg, second_jpeg
    ) -> None:
        add_ok(server, account, "previewed", target_jpeg)
        url = imageurl(server, account, "previewed")
        key = url.rsplit("/", 1)[-1]
        assert previews(server, url) == {f"{key}-256.jpg", f"{key}-1024.jpg"}
        stored = (server.data_dir / "thumbnails" / key[:2] / f"{key}-256.jpg").read_bytes()
        assert httpx.get(url + "/thumbnail", params={"size": 256}).content == stored
        server.call("UpdateImage", account.auth(identifier="previewed"), files={"image": second_jpeg})
        assert previews(server, url) == set()
        assert len(previews(server, imageurl(server, account, "previewed"))) == 2

    def test_a_missing_preview_is_rendered_once_then_kept(
        self, server: ServerProcess, account: Account, target_jpeg
    ) -> None:
        """Targets stored without previews (by an earlier version) still get them."""
        add_ok(server, account, "older", target_jpeg)
        url = imageurl(server, account, "older")
        for path in (server.data_dir / "thumbnails").glob(f"*/{url.rsplit('/', 1)[-1]}-*.jpg"):
            path.unlink()
        response = httpx.get(url + "/thumbnail", params={"size": 128})
        assert response.status_code == 200
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (128, 96)
        assert previews(server, url) == {url.rsplit("/", 1)[-1] + "-128.jpg"}


BURST = 4


@pytest.fixture(scope="module")
def stingy(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A file budget of 4 requests per address that (practically) never refills."""
    env = {
        "IMAGECLOUD_FILE_RATE_LIMIT_PER_SECOND": "0.0001",
        "IMAGECLOUD_FILE_RATE_LIMIT_BURST": str(BURST),
    }
    server = backend.server(tmp_path_factory.mktemp("stingy"), env=env)
    server.start()
    yield server
    server.stop()


def get_from(source: str, url: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60) as client:
        return client.get(url)


class TestFileBudget:
    def test_per_address_then_429_with_retry_after(self, stingy: ServerProcess, target_jpeg) -> None:
        account = stingy.new_account("files")
        add_ok(stingy, account, "poster", target_jpeg)
        url = imageurl(stingy, account, "poster")
        spender, other = next(_addresses), next(_addresses)
        for n in range(BURST):
            assert get_from(spender, url + ("/thumbnail" if n % 2 else "")).status_code == 200
        refused = get_from(spender, url)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert get_from(spender, url + "/thumbnail").status_code == 429
        assert get_from(other, url).content == target_jpeg
        # The owners' API is not charged to it.
        assert stingy.call("GetImages", account.auth())["returncode"] == 0
