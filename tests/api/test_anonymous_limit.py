"""GetImage without credentials: a budget per client address (20015 + Retry-After beyond it).

The server listens on 127.0.0.1; Linux routes all of 127.0.0.0/8 to the loopback interface, so connecting
from 127.0.0.2, 127.0.0.3, … gives the server genuinely different client addresses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagecloud.service.ratelimit import RateLimiter, address_key
from tests.api.helpers import add_ok
from tests.backends import Backend
from tests.server import Account, ServerProcess

BURST = 3
_addresses = (f"127.0.0.{n}" for n in itertools.count(2))


@pytest.fixture(scope="module")
def limited(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Anonymous budget of 3 requests that (practically) never refills; the per-user budget is ample."""
    env = {
        "IMAGECLOUD_ANONYMOUS_RATE_LIMIT_PER_SECOND": "0.0001",
        "IMAGECLOUD_ANONYMOUS_RATE_LIMIT_BURST": str(BURST),
    }
    server = backend.server(tmp_path_factory.mktemp("anonymous"), env=env)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def public(limited: ServerProcess, target_jpeg: bytes) -> Account:
    account = limited.new_account("anon")
    add_ok(limited, account, "poster", target_jpeg)
    return account


def post(
    server: ServerProcess,
    source: str,
    endpoint: str,
    fields: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST from the client address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=60) as client:
        return client.post(f"{server.url}/{endpoint}", data=fields, headers=headers)


def get_image(
    server: ServerProcess, source: str, fields: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    return post(server, source, "GetImage", fields, headers)


def code(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["returncode"]


class TestAnonymousBudget:
    def test_over_budget_is_20015_with_retry_after(self, limited: ServerProcess, public: Account) -> None:
        source = next(_addresses)
        fields = {"channel": public.channel, "identifier": "poster"}
        for _ in range(BURST):
            assert code(get_image(limited, source, fields)) == 0
        response = get_image(limited, source, fields)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.json() == {"returncode": 20015, "message": "system busy"}
        assert int(response.headers["retry-after"]) >= 1

    def test_every_anonymous_answer_spends_the_budget(self, limited: ServerProcess, public: Account) -> None:
        """Probing for identifiers that do not exist is what the budget is for."""
        source = next(_addresses)
        for n in range(BURST):
            assert (
                code(get_image(limited, source, {"channel": public.channel, "identifier": f"missing{n}"}))
                == 20014
            )
        assert code(get_image(limited, source, {"channel": public.channel, "identifier": "poster"})) == 20015

    def test_budget_is_per_address(self, limited: ServerProcess, public: Account) -> None:
        spender, other = next(_addresses), next(_addresses)
        fields = {"channel": public.channel, "identifier": "poster"}
        for _ in range(BURST + 2):
            get_image(limited, spender, fields)
        assert code(get_image(limited, spender, fields)) == 20015
        assert code(get_image(limited, other, fields)) == 0

    def test_credentials_use_the_users_budget(self, limited: ServerProcess, public: Account) -> None:
        source = next(_addresses)
        fields = {"channel": public.channel, "identifier": "poster"}
        for _ in range(BURST + 1):
            get_image(limited, source, fields)
        assert code(get_image(limited, source, fields)) == 20015
        for _ in range(BURST + 2):
            assert code(get_image(limited, source, public.auth(identifier="poster"))) == 0
        # A wrong key is not anonymous: it is refused as such, not let through on the address's budget.
        wrong = {**public.auth(identifier="poster"), "secretkey": "wrong"}
        assert code(get_image(limited, source, wrong)) == 20001

    def test_a_forwarded_for_header_from_an_untrusted_peer_buys_nothing(
        self, limited: ServerProcess, public: Account
    ) -> None:
        source = next(_addresses)
        fields = {"channel": public.channel, "identifier": "poster"}
        for _ in range(BURST):
            assert code(get_image(limited, source, fields)) == 0
        for n in range(3):
            forged = {"X-Forwarded-For": f"198.51.100.{n}"}
            assert code(get_image(limited, source, fields, forged)) == 20015

    def test_a_forwarded_for_header_from_loopback_buys_nothing_either(
        self, limited: ServerProcess, public: Account
    ) -> None:
        """No proxy is trusted unless configured: a client on the server's own host (127.0.0.1) cannot mint
        a fresh budget per request with a rotating header."""
        fields = {"channel": public.channel, "identifier": "poster"}
        codes = [
            code(get_image(limited, "127.0.0.1", fields, {"X-Forwarded-For": f"198.51.100.{n}"}))
            for n in range(BURST + 3)
        ]
        assert codes == [0] * BURST + [20015] * 3

    def test_other_endpoints_are_not_charged(self, limited: ServerProcess, public: Account) -> None:
        source = next(_addresses)
        for _ in range(BURST + 2):
            assert code(post(limited, source, "GetImages", public.auth())) == 0
        assert code(get_image(limited, source, {"channel": public.channel, "identifier": "poster"})) == 0


@pytest.fixture(scope="module")
def proxied(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Behind a reverse proxy on the same host, named as trusted."""
    env = {
        "IMAGECLOUD_ANONYMOUS_RATE_LIMIT_PER_SECOND": "0.0001",
        "IMAGECLOUD_ANONYMOUS_RATE_LIMIT_BURST": str(BURST),
        "IMAGECLOUD_TRUSTED_PROXIES": "127.0.0.1",
    }
    server = backend.server(tmp_path_factory.mktemp("proxied"), env=env)
    server.start()
    yield server
    server.stop()


class TestTrustedProxy:
    def test_a_trusted_proxys_forwarded_for_names_the_client(
        self, proxied: ServerProcess, target_jpeg: bytes
    ) -> None:
        account = proxied.new_account("behind")
        add_ok(proxied, account, "poster", target_jpeg)
        fields = {"channel": account.channel, "identifier": "poster"}
        spender = {"X-Forwarded-For": "198.51.100.7"}
        for _ in range(BURST):
            assert code(get_image(proxied, "127.0.0.1", fields, spender)) == 0
        assert code(get_image(proxied, "127.0.0.1", fields, spender)) == 20015
        # Another client behind the same proxy has a budget of its own.
        assert code(get_image(proxied, "127.0.0.1", fields, {"X-Forwarded-For": "198.51.100.8"})) == 0
        # An untrusted peer's header still counts for nothing.
        source = next(_addresses)
        for n in range(BURST):
            get_image(proxied, source, fields, {"X-Forwarded-For": f"203.0.113.{n}"})
        assert code(get_image(proxied, source, fields, {"X-Forwarded-For": "203.0.113.99"})) == 20015


class TestBuckets:
    def test_memory_stays_bounded_with_ever_new_addresses(self) -> None:
        limiter = RateLimiter(1.0, 2.0, clock=lambda: 0.0, max_buckets=1000)
        for n in range(5000):
            limiter.acquire(address_key(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"))
        assert len(limiter) == 1000

    def test_an_ipv6_host_cannot_mint_budgets_within_its_64(self) -> None:
        limiter = RateLimiter(1.0, 2.0, clock=lambda: 0.0)
        limiter.acquire(address_key("2001:db8:0:1::1"))
        limiter.acquire(address_key("2001:db8:0:1::2"))
        with pytest.raises(Exception, match="rate limit"):
            limiter.acquire(address_key("2001:db8:0:1:ffff::3"))
        limiter.acquire(address_key("2001:db8:0:2::1"))  # another /64 is another client
        assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7")
