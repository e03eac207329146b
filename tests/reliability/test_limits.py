"""Per-user rate limit (20015) and the body deadline for stalled uploads (HTTP 408)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.helpers import connect, encoded, read_response
from tests.server import ServerProcess

BURST = 3


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A budget of 3 requests that (practically) never refills, and 1 s to send a body."""
    env = {
        "IMAGECLOUD_RATE_LIMIT_PER_SECOND": "0.0001",
        "IMAGECLOUD_RATE_LIMIT_BURST": str(BURST),
        "IMAGECLOUD_BODY_TIMEOUT": "1",
    }
    server = ServerProcess(tmp_path_factory.mktemp("strict"), env=env)
    server.start()
    yield server
    server.stop()


class TestRateLimit:
    def test_over_budget_is_20015_with_retry_after(self, strict_server: ServerProcess):
        account = strict_server.new_account("rl1")
        for _ in range(BURST):
            assert strict_server.call("GetImages", account.auth())["returncode"] == 0
        response = strict_server.post("GetImages", account.auth())
        assert response.status_code == 200
        assert response.json() == {"returncode": 20015, "message": "system busy"}
        assert int(response.headers["retry-after"]) >= 1

    def test_budget_is_per_user(self, strict_server: ServerProcess):
        spender = strict_server.new_account("rl2")
        other = strict_server.new_account("rl3")
        for _ in range(BURST + 2):
            strict_server.call("GetImages", spender.auth())
        assert strict_server.call("GetImages", other.auth())["returncode"] == 0

    def test_wrong_keys_do_not_spend_the_owners_budget(self, strict_server: ServerProcess):
        victim = strict_server.new_account("rl4")
        for _ in range(BURST + 5):
            body = strict_server.call("GetImages", {**victim.auth(), "secretkey": "wrong"})
            assert body["returncode"] == 20001
        for _ in range(BURST):
            assert strict_server.call("GetImages", victim.auth())["returncode"] == 0


class TestBodyDeadline:
    def test_stalled_upload_is_408(self, strict_server: ServerProcess):
        account = strict_server.new_account("slow1")
        request = encoded(
            strict_server, "FindImage", account.auth(), files={"image": ("a.jpg", b"x" * 50_000)}
        )
        with connect(strict_server, timeout=30) as sock:
            sock.sendall(request[: len(request) // 2])  # and then nothing more
            status, _headers, body = read_response(sock)
        assert status == 408, body
        assert b"not received in time" in body

    def test_complete_upload_is_not_cut(self, strict_server: ServerProcess):
        account = strict_server.new_account("slow2")
        request = encoded(strict_server, "GetImages", account.auth())
        with connect(strict_server) as sock:
            sock.sendall(request)
            status, _headers, body = read_response(sock)
        assert status == 200, body
