"""Bounded admission for vision work: a full queue answers 20015 at once instead of queueing without end,
and a request that cannot start within a deadline answers 20015 instead of waiting on.

Image work (decode, features, search) runs in a thread pool sized to the cores. Requests beyond the running
ones wait, and without a bound they wait forever while their bodies sit in memory: latency grows until
every client times out. Here a request is admitted only while ``running + waiting`` stays within
``workers + queue``; past that the caller gets ``SystemBusy`` (20015 + Retry-After) immediately. A bounded
queue alone still lets admitted requests wait as long as the work ahead of them takes (seconds under
overload, when searches themselves slow down), so an admitted request that has not got a worker within
``wait`` seconds gives up its place and gets ``SystemBusy`` too: a client hears "retry" within the
deadline rather than an answer long after it stopped being useful.

Everything runs on the event loop thread, so plain integers need no lock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio import CapacityLimiter

from imagecloud.errors import SystemBusy


class VisionAdmission:
    def __init__(self, workers: int, queue: int, wait: float = math.inf) -> None:
        self.workers = max(1, workers)
        self.queue = max(0, queue)
        self.wait = wait if wait > 0 else math.inf
        self.limiter = CapacityLimiter(self.workers)  # held while image work runs: the workers
        # Threads for the work. Never waited on: a task takes a thread only after a worker token.
        self.threads = CapacityLimiter(self.workers)
        self.admitted = 0
        self.rejected = 0
        self.expired = 0

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
        """Hold a worker for the duration of the work; yields the limiter to run its thread under.

        Raises ``SystemBusy`` when the queue is full, or when no worker became free within ``wait``.
        """
        self.check()
        self.admitted += 1
        try:
            started = False
            with anyio.move_on_after(self.wait):
                await self.limiter.acquire()
                started = True
            if not started:
                self.expired += 1
                raise SystemBusy(f"no vision worker free within {self.wait:g} s")
            try:
                yield self.threads
            finally:
                self.limiter.release()
        finally:
            self.admitted -= 1
