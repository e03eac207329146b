"""``/files/<key>`` (the original behind ``imageurl``) and ``/files/<key>/thumbnail?size=N`` (a preview).

Anyone with the URL may fetch these, without credentials, so they run on a budget of their own and never
in the owners' image-work queue: a flood of anonymous file requests must not make an owner's FindImage
answer 20015.

- Each client address has a token bucket (``file_rate_limit_per_second`` / ``file_rate_limit_burst``);
  past it, HTTP 429 with Retry-After.
- Reads run in a small thread pool of their own (``file_workers``), not in the pool that owners'
  database work shares.
- An original whose blob store does not answer (an S3 bucket out of reach) is HTTP 503 with Retry-After.
- Previews are files written when a target is stored. One that is missing (another size, or a target
  stored without previews) is rendered once in a one-thread pool with a short queue, then kept; when that
  queue is full the answer is HTTP 503 with Retry-After.

Caching: a key never changes its content (an update makes a new key), but a removed target's file must
stop being served, so shared caches may keep an answer only briefly and then revalidate with its ETag.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, Request
from starlette.responses import Response

from imagecloud.api.backpressure import VisionAdmission
from imagecloud.api.responses import RETRY_AFTER_SECONDS
from imagecloud.config import Settings
from imagecloud.errors import ImageCloudError, SystemBusy
from imagecloud.service.files import StoredFile
from imagecloud.service.ratelimit import RateLimiter, address_key
from imagecloud.service.service import Service
from imagecloud.storage.blobs import BlobStoreUnavailable, is_blob_key
from imagecloud.vision.thumbnail import nearest_size

router = APIRouter()

# Seconds a browser or shared cache may reuse an answer before asking again (a 304 when unchanged).
MAX_AGE_SECONDS = 60
CACHE_CONTROL = f"public, max-age={MAX_AGE_SECONDS}, must-revalidate"
# Previews missing from disk waiting for the one render thread; beyond it, 503 at once. More than a browser
# opens at once to one host (6), so one person paging through targets stored without previews never sees
# a refusal; ~10-50 ms each, so the last one waits about a second at worst.
RENDER_QUEUE = 16

T = TypeVar("T")


class FileBudget:
    """The anonymous side's own capacity: per-address bucket, read pool, render pool."""

    def __init__(self, settings: Settings) -> None:
        self.per_address = RateLimiter(settings.file_rate_limit_per_second, settings.file_rate_limit_burst)
        self.reads = CapacityLimiter(max(1, settings.file_workers))
        self.renders = VisionAdmission(1, RENDER_QUEUE)

    def charge(self, request: Request) -> None:
        self.per_address.acquire(address_key(request.client.host if request.client else None))

    async def read(self, func: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(func, limiter=self.reads)

    async def render(self, func: Callable[[], T]) -> T:
        async with self.renders.slot() as limiter:
            return await anyio.to_thread.run_sync(func, limiter=limiter)


def _budget(request: Request) -> FileBudget:
    budget: FileBudget | None = getattr(request.app.state, "file_budget", None)
    if budget is None:
        # Made on first use, on the event loop (anyio's limiters want one).
        budget = request.app.state.file_budget = FileBudget(request.app.state.service.settings)
    return budget


def _admit(blob_key: str, request: Request) -> FileBudget | Response:
    """The budget to serve ``blob_key`` from, or the answer: 404 for no key, 429 when the budget is spent."""
    if not is_blob_key(blob_key):
        return Response(status_code=404)
    budget = _budget(request)
    try:
        budget.charge(request)
    except SystemBusy:
        return _busy(429)
    return budget


def _busy(status: int) -> Response:
    return Response(status_code=status, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _answer(request: Request, body: bytes | None, length: int, content_type: str, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if request.method == "HEAD" or body is None:
        headers["Content-Length"] = str(length)
        return Response(status_code=200, media_type=content_type, headers=headers)
    return Response(body, media_type=content_type, headers=headers)


def _not_modified(request: Request, etag: str) -> Response | None:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    return None


@router.api_route("/files/{blob_key}", methods=["GET", "HEAD"])
async def original(blob_key: str, request: Request) -> Response:
    service: Service = request.app.state.service
    budget = _admit(blob_key, request)
    if isinstance(budget, Response):
        return budget
    # The row first: a removed target's file is 404 even to a client revalidating its cached copy.
    info: StoredFile | None = await budget.read(partial(service.files.info, blob_key))
    if info is None:
        return Response(status_code=404)
    etag = f'"{blob_key}"'
    if (unchanged := _not_modified(request, etag)) is not None:
        return unchanged
    if request.method == "HEAD":
        return _answer(request, None, info.size, info.content_type, etag)
    try:
        data = await budget.read(partial(service.files.original, blob_key))
    except BlobStoreUnavailable:
        return _busy(503)
    if data is None:
        return Response(status_code=404)
    return _answer(request, data, len(data), info.content_type, etag)


@router.api_route("/files/{blob_key}/thumbnail", methods=["GET", "HEAD"])
async def thumbnail(blob_key: str, request: Request, size: int = 256) -> Response:
    service: Service = request.app.state.service
    budget = _admit(blob_key, request)
    if isinstance(budget, Response):
        return budget
    # A fixed set of sizes keeps the stored previews few and stops callers from asking for arbitrary work.
    size = nearest_size(size)
    if await budget.read(partial(service.files.info, blob_key)) is None:
        return Response(status_code=404)
    etag = f'"{blob_key}-{size}"'
    if (unchanged := _not_modified(request, etag)) is not None:
        return unchanged
    data = await budget.read(partial(service.files.stored_thumbnail, blob_key, size))
    if data is None:
        try:
            data = await budget.render(partial(service.files.render_thumbnail, blob_key, size))
        except (SystemBusy, BlobStoreUnavailable):
            return _busy(503)
        except ImageCloudError:
            return Response(status_code=404)
    if data is None:
        return Response(status_code=404)
    return _answer(request, data, len(data), "image/jpeg", etag)
