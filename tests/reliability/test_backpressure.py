"""A saturated server answers 20015 + Retry-After at once, and a refused request changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.api.helpers import blob_files, jpeg, stored_identifiers
from tests.reliability.helpers import metric
from tests.server import Account, ServerProcess

BURST = 12


@pytest.fixture(scope="module")
def narrow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One vision worker and no waiting room: a second concurrent image request cannot be admitted."""
    env = {"IMAGECLOUD_VISION_WORKERS": "1", "IMAGECLOUD_VISION_QUEUE": "0"}
    server = ServerProcess(tmp_path_factory.mktemp("narrow"), env=env)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    """A large camera photo: decoding and searching it keeps the single worker busy for a while."""
    view = imagegen.photo(imagegen.poster(31), seed=3, out_size=(2400, 1800))
    return imagegen.encode(view.image, quality=95)


def burst(server: ServerProcess, requests: list[tuple[str, dict[str, Any], bytes]]) -> list[httpx.Response]:
    """Send all requests at the same moment, one thread each."""
    start = threading.Barrier(len(requests))
    responses: list[httpx.Response | None] = [None] * len(requests)

    def send(n: int) -> None:
        endpoint, data, photo = requests[n]
        start.wait()
        responses[n] = server.post(endpoint, data, files=jpeg(photo))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


class TestFullQueue:
    def test_excess_requests_get_20015_with_retry_after(self, narrow_server: ServerProcess, big_photo):
        account = narrow_server.new_account("busyfind")
        data = {"username": account.username, "secretkey": account.secretkey}
        before = metric(narrow_server, "imagecloud_requests_total", endpoint="FindImage", returncode="20015")
        responses = burst(narrow_server, [("FindImage", data, big_photo)] * BURST)
        codes = [r.json()["returncode"] for r in responses]
        assert all(r.status_code == 200 for r in responses)
        assert set(codes) == {0, 20015}, codes
        for response in responses:
            if response.json()["returncode"] == 20015:
                assert response.json()["message"] == "system busy"
                assert int(response.headers["retry-after"]) >= 1
            else:
                assert "retry-after" not in response.headers
        after = metric(narrow_server, "imagecloud_requests_total", endpoint="FindImage", returncode="20015")
        assert after - before == codes.count(20015)

    def test_refused_add_stores_nothing(self, narrow_server: ServerProcess, big_photo):
        account = narrow_server.new_account("busyadd")
        before = blob_files(narrow_server)  # other tests of this module may have stored targets
        requests = [("AddImage", account.auth(identifier=f"t{n:03d}"), big_photo) for n in range(BURST)]
        responses = burst(narrow_server, requests)
        codes = {
            req[1]["identifier"]: r.json()["returncode"] for req, r in zip(requests, responses, strict=True)
        }
        assert 20015 in codes.values() and 0 in codes.values(), codes
        assert set(codes.values()) <= {0, 20015}
        added = sorted(ident for ident, code in codes.items() if code == 0)
        assert stored_identifiers(narrow_server, account.channel) == added
        assert len(blob_files(narrow_server) - before) == len(added)

    def test_console_detail_waits_in_the_same_queue(self, narrow_server: ServerProcess, big_photo):
        """GetImageDetail re-runs the rating self-test: image work, bounded like AddImage and FindImage."""
        account = narrow_server.new_account("busydetail")
        narrow_server.call("AddImage", account.auth(identifier="poster"), files=jpeg(big_photo))
        requests = [("GetImageDetail", account.auth(identifier="poster"), big_photo)] * BURST
        codes = [r.json()["returncode"] for r in burst(narrow_server, requests)]
        assert set(codes) == {0, 20015}, codes

    def test_queue_drains(self, narrow_server: ServerProcess, big_photo):
        """Busy is a moment, not a state: once the burst is over, one request is served again."""
        account: Account = narrow_server.new_account("busyafter")
        body = narrow_server.call(
            "FindImage", {"username": account.username, "secretkey": account.secretkey}, files=jpeg(big_photo)
        )
        assert body["returncode"] == 0
        assert metric(narrow_server, "imagecloud_vision_queue_depth") == 0
        assert metric(narrow_server, "imagecloud_vision_running") == 0


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One vision worker, room to wait, but a deadline far shorter than one big photo's analysis."""
    env = {
        "IMAGECLOUD_VISION_WORKERS": "1",
        "IMAGECLOUD_VISION_QUEUE": "8",
        "IMAGECLOUD_VISION_QUEUE_TIMEOUT": "0.01",
    }
    server = ServerProcess(tmp_path_factory.mktemp("impatient"), env=env)
    server.start()
    yield server
    server.stop()


class TestStartDeadline:
    def test_admitted_requests_that_cannot_start_in_time_get_20015(
        self, impatient_server: ServerProcess, big_photo
    ):
        """Six requests fit in the queue, but only the first gets the worker before the others' deadline."""
        account = impatient_server.new_account("deadline")
        data = {"username": account.username, "secretkey": account.secretkey}
        responses = burst(impatient_server, [("FindImage", data, big_photo)] * 6)
        codes = [r.json()["returncode"] for r in responses]
        assert set(codes) == {0, 20015}, codes
        for response in responses:
            if response.json()["returncode"] == 20015:
                assert int(response.headers["retry-after"]) >= 1
        # The expired requests gave their places back: the queue is empty and serves again.
        assert metric(impatient_server, "imagecloud_vision_queue_depth") == 0
        assert impatient_server.call("FindImage", data, files=jpeg(big_photo))["returncode"] == 0
