"""Bounded admission for vision work: a full queue answers 20015 at once instead of queueing without end.

Image work (decode, features, search) runs in a thread pool sized to the cores. Requests beyond the running
ones wait, and without a bound they wait forever while their bodies sit in memory: latency grows until
every client times out. Here a request is admitted only while ``running + waiting`` stays within
``workers + queue``; past that the caller gets ``SystemBusy`` (20015 + Retry-After) immediately.

Everything runs on the event loop thread, so plain integers need no lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CapacityLimiter

from imagecloud.errors import SystemBusy


class VisionAdmission:
    def __init__(self, workers: int, queue: int) -> None:
        self.workers = max(1, workers)
        self.queue = max(0, queue)
        self.limiter = CapacityLimiter(self.workers)
        self.admitted = 0
        self.rejected = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    @property
    def running(self) -> int:
        return int(self.limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - self.running)

    def check(self) -> None:
        """Refuse early (before the body is read) when no slot is free; reserves nothing."""
        if self.admitted >= self.capacity:
            self.rejected += 1
            raise SystemBusy(f"vision queue full ({self.admitted} of {self.capacity})")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[CapacityLimiter]:
        """Hold one admission for the duration of the work; yields the limiter that runs it."""
        self.check()
        self.admitted += 1
        try:
            yield self.limiter
        finally:
            self.admitted -= 1
