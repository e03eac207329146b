"""The vendor endpoints (AddImage … FindImage) and our form-based extensions.

Each handler parses the form, hands plain strings and the upload to the service in a worker thread, and
lets ``responses`` shape the answer. Image work runs under a limiter sized to the cores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request
from sqlalchemy.exc import OperationalError
from starlette.responses import Response

from imagecloud.api.backpressure import VisionAdmission
from imagecloud.api.forms import Form, read_form, require_file
from imagecloud.api.logs import current_request
from imagecloud.api.metrics import Metrics
from imagecloud.api.responses import failure, success
from imagecloud.errors import ImageCloudError, SystemBusy
from imagecloud.service.ratelimit import RateLimiter, address_key
from imagecloud.service.service import Service
from imagecloud.storage.blobs import BlobStoreUnavailable

log = logging.getLogger(__name__)
router = APIRouter()

Handler = Callable[[Request, Service, Form], Awaitable[dict[str, Any]]]
T = TypeVar("T")


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def in_thread(request: Request, func: Callable[[], T], *, vision: bool) -> T:
    """Run ``func`` in a worker thread; image work (``vision``) first takes a place in the bounded queue."""
    if not vision:
        return await anyio.to_thread.run_sync(func)
    admission: VisionAdmission = request.app.state.admission
    # A bounded queue in front of the vision workers: when it is full this raises SystemBusy at once.
    async with admission.slot() as limiter:
        return await anyio.to_thread.run_sync(func, limiter=limiter)


async def _refuse_early_when_full(request: Request) -> None:
    admission: VisionAdmission = request.app.state.admission
    try:
        admission.check()
    except SystemBusy:
        await _drain(request)
        raise


async def _refuse_while_starting(request: Request, service: Service) -> None:
    if not service.ready:
        await _drain(request)
        raise SystemBusy("starting: the search index is loading")


async def _drain(request: Request) -> None:
    # Read and drop the body chunk by chunk (never held): answering before the client has sent it all
    # would make many clients see a reset connection instead of the 20015 they can act on.
    async for _chunk in request.stream():
        pass


def vendor_endpoint(
    path: str, *, multipart_only: bool, on: APIRouter | None = None
) -> Callable[[Handler], Handler]:
    """Register ``handler`` at ``path`` (POST) with the shared parsing and result-code mapping.

    ``on`` names another router (the console's extensions); the vendor router by default.
    """

    def register(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            service = _service(request)
            metrics: Metrics = request.app.state.metrics
            started = time.perf_counter()
            response: Response
            returncode = 0
            reason: str | None = None
            metrics.in_progress.inc()
            try:
                await _refuse_while_starting(request, service)
                if multipart_only:
                    # Image endpoints: a saturated server refuses before parsing (and buffering) the upload.
                    await _refuse_early_when_full(request)
                form = await read_form(
                    request,
                    multipart_only=multipart_only,
                    # Text fields are bounded by the transport cap only, so an oversized field reaches the
                    # service and gets its result code in precedence order (20001 before 20002).
                    max_field_bytes=service.settings.max_request_bytes,
                )
                response = success(await handler(request, service, form))
            except ImageCloudError as error:
                reason = error.detail or error.message
                log.info("%s -> %d (%s)", path, error.returncode, reason)
                response = failure(error)
                returncode = error.returncode
            except (OperationalError, BlobStoreUnavailable) as error:
                # The database or the blob store is locked or unreachable: nothing was acknowledged, the
                # caller may retry.
                log.warning("%s -> 20015: %s", path, error)
                response = failure(SystemBusy(str(error)))
                returncode = SystemBusy.returncode
                reason = (
                    "database unavailable" if isinstance(error, OperationalError) else "blobs unavailable"
                )
            finally:
                metrics.in_progress.dec()
            # Server-side time (body parsing included) so clients and benchmarks can tell it from the network.
            elapsed = time.perf_counter() - started
            response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.2f}"
            metrics.observe(path.strip("/"), returncode, elapsed)
            info = current_request()
            if info is not None:
                info.returncode = returncode
                info.reason = reason
            return response

        # A fresh function per path (not functools.wraps): FastAPI reads the signature to build parameters.
        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        (on or router).add_api_route(path, endpoint, methods=["POST"], name=path.strip("/"))
        return handler

    return register


@vendor_endpoint("/AddImage", multipart_only=True)
async def add_image(request: Request, service: Service, form: Form) -> dict[str, Any]:
    upload = require_file(form)
    call = partial(
        service.add_image,
        form.get("username"),
        form.get("secretkey"),
        form.get("channel"),
        form.get("identifier"),
        form.get("metadata"),
        upload,
        metadata_is_file=form.is_file("metadata"),
    )
    return await in_thread(request, call, vision=True)


@vendor_endpoint("/RemoveImage", multipart_only=False)
async def remove_image(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.remove_image,
        form.get("username"),
        form.get("secretkey"),
        form.get("channel"),
        form.get("identifier"),
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/GetImages", multipart_only=False)
async def get_images(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.get_images,
        form.get("username"),
        form.get("secretkey"),
        form.get("channel"),
        form.get("position"),
        form.get("count"),
        prefix=form.get("prefix"),
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/GetImage", multipart_only=False)
async def get_image(request: Request, service: Service, form: Form) -> dict[str, Any]:
    username, secretkey = form.get("username"), form.get("secretkey")
    if not (username or secretkey):
        # Without credentials (the service's own test for them) there is no user to charge, so the caller's
        # address pays, before any database work. With credentials the per-user budget applies instead.
        anonymous: RateLimiter = request.app.state.anonymous_limiter
        anonymous.acquire(address_key(request.client.host if request.client else None))
    call = partial(
        service.get_image,
        username,
        secretkey,
        form.get("channel"),
        form.get("identifier"),
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/Statistics", multipart_only=False)
async def statistics(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.statistics,
        form.get("username"),
        form.get("secretkey"),
        form.get("startdate"),
        form.get("enddate"),
        form.get("channel"),
        form.get("identifier"),
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/FindImage", multipart_only=True)
async def find_image(request: Request, service: Service, form: Form) -> dict[str, Any]:
    upload = require_file(form)
    call = partial(
        service.find_image,
        form.get("username"),
        form.get("secretkey"),
        form.get("channel"),
        form.get("maxresults"),
        upload,
    )
    return await in_thread(request, call, vision=True)


@vendor_endpoint("/UpdateImage", multipart_only=False)
async def update_image(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.update_image,
        form.get("username"),
        form.get("secretkey"),
        form.get("channel"),
        form.get("identifier"),
        form.get("metadata"),
        form.upload("image"),
        metadata_is_file=form.is_file("metadata"),
    )
    return await in_thread(request, call, vision=True)


@vendor_endpoint("/CreateChannel", multipart_only=False)
async def create_channel(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.api_create_channel, form.get("username"), form.get("secretkey"), form.get("channel")
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/DeleteChannel", multipart_only=False)
async def delete_channel(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.api_delete_channel, form.get("username"), form.get("secretkey"), form.get("channel")
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/ListChannels", multipart_only=False)
async def list_channels(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(service.api_list_channels, form.get("username"), form.get("secretkey"))
    return await in_thread(request, call, vision=False)
