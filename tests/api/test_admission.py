"""The admission in front of the vision workers, driven directly: who starts, who waits, who is refused."""

from __future__ import annotations

import anyio
import pytest

from imagecloud.api.backpressure import VisionAdmission
from imagecloud.errors import SystemBusy


async def _holding(admission: VisionAdmission, holding: anyio.Event, release: anyio.Event) -> None:
    async with admission.slot():
        holding.set()
        await release.wait()


def test_a_request_that_cannot_start_within_the_deadline_is_refused() -> None:
    async def main() -> None:
        admission = VisionAdmission(workers=1, queue=8, wait=0.05)
        holding, release = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(_holding, admission, holding, release)
            await holding.wait()
            with pytest.raises(SystemBusy):
                async with admission.slot():
                    pytest.fail("started while the only worker was busy")
            # The refused request left the queue; the worker is still held.
            assert (admission.running, admission.waiting, admission.expired) == (1, 0, 1)
            release.set()
        async with admission.slot():
            assert admission.running == 1
        assert (admission.running, admission.waiting) == (0, 0)

    anyio.run(main)


def test_without_a_deadline_a_request_waits_for_the_worker() -> None:
    async def main() -> None:
        admission = VisionAdmission(workers=1, queue=8, wait=0)
        holding, release = anyio.Event(), anyio.Event()
        started = anyio.Event()

        async def waiter() -> None:
            async with admission.slot():
                started.set()

        async with anyio.create_task_group() as group:
            group.start_soon(_holding, admission, holding, release)
            await holding.wait()
            group.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not started.is_set() and admission.waiting == 1
            release.set()
        assert started.is_set() and admission.expired == 0

    anyio.run(main)


def test_a_full_queue_refuses_at_once() -> None:
    async def main() -> None:
        admission = VisionAdmission(workers=1, queue=0, wait=10)
        holding, release = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(_holding, admission, holding, release)
            await holding.wait()
            with pytest.raises(SystemBusy):
                async with admission.slot():
                    pytest.fail("admitted past the queue bound")
            assert (admission.rejected, admission.expired) == (1, 0)
            release.set()

    anyio.run(main)
