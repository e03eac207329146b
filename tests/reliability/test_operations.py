"""Operations: health, metrics, request ids in JSON logs, graceful shutdown with requests in flight."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import add_ok, jpeg, stored_identifiers
from tests.reliability.helpers import connect, encoded, metric, read_response
from tests.s3 import S3Server, SeaweedProcess, weed_binary
from tests.server import ServerProcess


@pytest.fixture(scope="module")
def chatty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server logging at info level, so every request leaves its access line."""
    server = ServerProcess(tmp_path_factory.mktemp("chatty"), log_level="info")
    server.start()
    yield server
    server.stop()


def log_entries(server: ServerProcess) -> list[dict[str, object]]:
    entries = []
    # The server may be writing a line right now: only lines it has ended count.
    for line in server.log_path.read_text().split("\n")[:-1]:
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict)
        entries.append(entry)
    return entries


def logged(
    server: ServerProcess, request_id: str, wanted: Callable[[dict[str, object]], bool], seconds: float = 10.0
) -> list[dict[str, object]]:
    """The log entries of ``request_id`` once one of them is ``wanted`` (or when ``seconds`` are up): a line
    is written after its response is sent, so it may arrive a moment after the client has the answer."""
    deadline = time.monotonic() + seconds
    while True:
        entries = [e for e in log_entries(server) if e.get("request_id") == request_id]
        if any(wanted(e) for e in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


class TestHealth:
    def test_liveness_and_readiness(self, chatty_server: ServerProcess):
        assert httpx.get(f"{chatty_server.url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{chatty_server.url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "index": True,
            "database": True,
            "dependencies": {
                "database": {"backend": "sqlite", "ok": True},
                "blobs": {"backend": "local", "ok": True},
            },
        }

    def test_readiness_and_answers_when_the_s3_server_goes_down(
        self, tmp_path: Path, s3_server: S3Server, target_jpeg: bytes
    ):
        """A load balancer must stop sending work to a server whose object store is down, and clients must
        hear "retry" (20015, HTTP 503), never a success that was not stored or a broken answer."""
        binary = weed_binary()
        assert binary is not None  # s3_server has skipped the test otherwise
        # An S3 server of this test's own, since it is stopped halfway.
        weed = SeaweedProcess(binary, tmp_path / "s3")
        own = weed.start()
        server = ServerProcess(tmp_path / "data", settings=own.settings())
        server.start()
        try:
            blobs = {"backend": "s3", "ok": True}
            assert httpx.get(f"{server.url}/readyz").json()["dependencies"]["blobs"] == blobs
            account = server.new_account("storeless")
            add_ok(server, account, "kept", target_jpeg)
            url = server.url + server.call("GetImage", account.auth(identifier="kept"))["imageurl"]
            weed.stop()
            ready = httpx.get(f"{server.url}/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "not ready",
                "index": True,
                "database": True,
                "dependencies": {
                    "database": {"backend": "sqlite", "ok": True},
                    "blobs": {"backend": "s3", "ok": False},
                },
            }
            body = server.call("AddImage", account.auth(identifier="refused"), files=jpeg(target_jpeg))
            assert body["returncode"] == 20015, body
            assert stored_identifiers(server, account.channel) == ["kept"]
            original = httpx.get(url)
            assert original.status_code == 503 and "retry-after" in original.headers
            # A removal needs only the database; its object is left for the next start's sweep.
            assert server.call("RemoveImage", account.auth(identifier="kept"))["returncode"] == 0
            assert stored_identifiers(server, account.channel) == []
        finally:
            server.stop()
            weed.stop()


class TestMetrics:
    def test_counts_by_endpoint_and_result_code(self, chatty_server: ServerProcess):
        account = chatty_server.new_account("m1")
        ok = dict(endpoint="GetImages", returncode="0")
        denied = dict(endpoint="GetImages", returncode="20001")
        ok_before, denied_before = (
            metric(chatty_server, "imagecloud_requests_total", **k) for k in (ok, denied)
        )
        for _ in range(3):
            chatty_server.call("GetImages", account.auth())
        chatty_server.call("GetImages", {**account.auth(), "secretkey": "nope"})
        assert metric(chatty_server, "imagecloud_requests_total", **ok) == ok_before + 3
        assert metric(chatty_server, "imagecloud_requests_total", **denied) == denied_before + 1
        count = metric(chatty_server, "imagecloud_request_duration_seconds_count", endpoint="GetImages")
        assert count >= 4
        assert metric(
            chatty_server, "imagecloud_request_duration_seconds_bucket", endpoint="GetImages", le="+Inf"
        )

    def test_index_size_follows_adds_and_removes(self, chatty_server: ServerProcess, target_jpeg):
        account = chatty_server.new_account("m2")
        before = metric(chatty_server, "imagecloud_index_targets")
        add_ok(chatty_server, account, "metric1", target_jpeg)
        assert metric(chatty_server, "imagecloud_index_targets") == before + 1
        chatty_server.call("RemoveImage", account.auth(identifier="metric1"))
        assert metric(chatty_server, "imagecloud_index_targets") == before

    def test_queue_gauges_exposed(self, chatty_server: ServerProcess):
        text = httpx.get(f"{chatty_server.url}/metrics").text
        assert "# TYPE imagecloud_vision_queue_depth gauge" in text
        assert "# TYPE imagecloud_request_duration_seconds histogram" in text


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("guarded"), env={"IMAGECLOUD_METRICS_TOKEN": "s3cret-token"}
    )
    server.start()
    yield server
    server.stop()


class TestMetricsAccess:
    """/metrics counts every tenant's requests: not for whoever can reach the port."""

    def test_loopback_only_and_not_through_a_proxy(self, chatty_server: ServerProcess):
        url = f"{chatty_server.url}/metrics"
        assert httpx.get(url).status_code == 200
        # What a reverse proxy on the same host relays comes from loopback too, but for someone else.
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            assert httpx.get(url, headers={header: "203.0.113.5"}).status_code == 403, header

    def test_behind_a_token_when_one_is_configured(self, guarded_server: ServerProcess):
        url = f"{guarded_server.url}/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = httpx.get(url, headers={"Authorization": "Bearer s3cret-token"})
        assert allowed.status_code == 200
        assert "imagecloud_index_targets" in allowed.text


class TestRequestIds:
    def test_given_id_is_echoed_and_logged(self, chatty_server: ServerProcess):
        account = chatty_server.new_account("rid1")
        response = chatty_server.post("GetImages", account.auth(), headers={"X-Request-ID": "trace-42.a"})
        assert response.headers["x-request-id"] == "trace-42.a"

        def wanted(e: dict[str, object]) -> bool:
            return e["logger"] == "imagecloud.access" and e["path"] == "/GetImages" and e["returncode"] == 0

        access = logged(chatty_server, "trace-42.a", wanted)
        assert any(wanted(e) for e in access), access

    def test_service_log_lines_carry_the_id(self, chatty_server: ServerProcess, target_jpeg):
        account = chatty_server.new_account("rid2")
        chatty_server.post(
            "AddImage",
            account.auth(identifier="logged1"),
            files=jpeg(target_jpeg),
            headers={"X-Request-ID": "add-7"},
        )
        lines = logged(chatty_server, "add-7", lambda e: e["logger"] == "imagecloud.service.service")
        assert any(e["logger"] == "imagecloud.service.service" for e in lines), lines

    @pytest.mark.parametrize("given", ["", "has space", "x" * 200, "line\\nbreak"])
    def test_unsafe_ids_are_replaced(self, chatty_server: ServerProcess, given: str):
        response = httpx.get(f"{chatty_server.url}/healthz", headers={"X-Request-ID": given})
        made = response.headers["x-request-id"]
        assert made != given and len(made) == 32

    def test_every_response_has_an_id(self, chatty_server: ServerProcess):
        first = httpx.get(f"{chatty_server.url}/healthz").headers["x-request-id"]
        second = httpx.get(f"{chatty_server.url}/nowhere").headers["x-request-id"]
        assert first != second


def accepts_connections(server: ServerProcess) -> bool:
    try:
        connect(server, timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


class TestGracefulShutdown:
    def test_sigterm_finishes_the_request_in_flight(self, fresh_server: ServerProcess, target_jpeg):
        account = fresh_server.new_account("drain")
        request = encoded(
            fresh_server, "AddImage", account.auth(identifier="inflight"), files=jpeg(target_jpeg)
        )
        with connect(fresh_server) as sock:
            sock.sendall(request[:-100])
            # The server has started handling it once the gauge counts it.
            deadline = time.monotonic() + 30
            while metric(fresh_server, "imagecloud_requests_in_progress") < 1:
                assert time.monotonic() < deadline, "request never reached the app"
                time.sleep(0.05)
            assert fresh_server.process is not None
            fresh_server.process.send_signal(signal.SIGTERM)
            # The signal has landed once the server stops accepting: only then is the request known to be
            # in flight during the shutdown.
            while accepts_connections(fresh_server):
                time.sleep(0.05)
            sock.sendall(request[-100:])
            status, _headers, body = read_response(sock)
        assert status == 200
        assert json.loads(body)["returncode"] == 0
        # uvicorn re-raises the signal once shut down cleanly, so the exit status is "terminated by SIGTERM".
        assert fresh_server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        fresh_server.process = None
        fresh_server.start()
        assert stored_identifiers(fresh_server, account.channel) == ["inflight"]
        assert len([p for p in Path(fresh_server.data_dir / "blobs").rglob("*") if p.is_file()]) == 1
