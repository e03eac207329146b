"""Request budgets (token buckets): a caller over its budget gets 20015, so one cannot starve the others.

Authenticated requests are keyed by the authenticated user, never by the name a caller merely claims:
otherwise anyone could spend a victim's budget with wrong keys. Anonymous requests (GetImage without
credentials) are keyed by the client's address (:func:`address_key`). Called from service threads and the
event loop, hence the lock.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from imagecloud.errors import SystemBusy

# Idle buckets are full buckets, so forgetting the least recently seen ones changes nothing but memory.
_MAX_BUCKETS = 100_000


class RateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; ``rate <= 0`` disables limiting.

    At most ``max_buckets`` keys are remembered (the least recently seen are forgotten first), so callers
    with ever new keys, such as addresses, cannot make the limiter grow without bound.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = _MAX_BUCKETS,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_buckets = max(1, max_buckets)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        """Keys currently remembered."""
        with self._lock:
            return len(self._buckets)

    def acquire(self, key: str) -> None:
        """Spend one token of ``key``'s bucket or raise SystemBusy (nothing was done yet)."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        if not allowed:
            raise SystemBusy(f"rate limit of {self.rate:g}/s exceeded for {key!r}")


def address_key(host: str | None) -> str:
    """The budget key of a client address: the address itself, or its /64 network for IPv6.

    One IPv6 host is usually given a whole /64, so keying by full address would hand it 2^64 budgets.
    """
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (e.g. a test client's name): still one key per name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
