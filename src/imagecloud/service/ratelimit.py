"""Per-user request budget (token bucket): a user over it gets 20015, so one tenant cannot starve others.

Keyed by the authenticated user, never by the name a caller merely claims: otherwise anyone could spend a
victim's budget with wrong keys. Called from service threads, hence the lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from imagecloud.errors import SystemBusy

# Idle buckets are full buckets, so forgetting the least recently seen ones changes nothing but memory.
_MAX_BUCKETS = 100_000


class RateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; ``rate <= 0`` disables limiting."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

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
            while len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
        if not allowed:
            raise SystemBusy(f"rate limit of {self.rate:g}/s exceeded for {key!r}")
