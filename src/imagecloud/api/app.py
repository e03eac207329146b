"""FastAPI application factory."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from imagecloud import __version__
from imagecloud.api import appkeys, console, docs, files, vendor
from imagecloud.api.backpressure import VisionAdmission
from imagecloud.api.limits import BODY_TIMEOUT, TOO_LARGE_BODY, BodySizeLimit, BodyTimeout, BodyTooLarge
from imagecloud.api.logs import RequestContext
from imagecloud.api.metrics import CONTENT_TYPE, Metrics, may_read_metrics
from imagecloud.api.openapi import describe_form_endpoints
from imagecloud.service.ratelimit import RateLimiter
from imagecloud.service.service import Service

log = logging.getLogger(__name__)


def _start(service: Service, stopping: threading.Event) -> None:
    try:
        service.start()
    except Exception:
        if stopping.is_set():  # shut down while loading: the load fails as the database closes
            return
        # The server cannot serve without its database and index, and uvicorn's start-up is over by now, so
        # nothing else would stop it: end the process as a failed lifespan start-up would have.
        log.exception("start-up failed")
        logging.shutdown()
        os._exit(3)


def create_app(service: Service) -> FastAPI:
    """An app serving ``service``; the lifespan starts migrating the database and loading the index in the
    background, and the API answers 20015 (and /readyz 503) until that is done."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = service.settings
        admission = VisionAdmission(
            settings.vision_workers, settings.vision_queue, settings.vision_queue_timeout
        )
        app.state.admission = admission
        # The index loads while the port is already open: requests meanwhile hear 20015 + Retry-After and
        # /readyz "not ready", instead of connection errors for as long as the load takes.
        stopping = threading.Event()
        threading.Thread(target=_start, args=(service, stopping), daemon=True, name="service-start").start()
        yield
        stopping.set()
        await anyio.to_thread.run_sync(service.stop)
        service.db.dispose()

    app = FastAPI(
        title="imagecloud",
        version=__version__,
        summary="Image cloud recognition: enrol target images, find them in camera photos.",
        description="Every endpoint is a POST of form fields answering HTTP 200 with a JSON `returncode` "
        "(0 = success); the contract is docs/API.md. Apps and web pages search with an app key "
        "(CreateAppKey), never the secret key.",
        lifespan=lifespan,
        # The reference page is served offline by api/docs.py; FastAPI's would load from a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "vendor", "description": "The vendor API: existing clients speak it unchanged."},
            {"name": "extension", "description": "Ours: channels, app keys, updates."},
        ],
    )
    app.state.service = service
    settings = service.settings
    app.state.anonymous_limiter = RateLimiter(
        settings.anonymous_rate_limit_per_second, settings.anonymous_rate_limit_burst
    )

    def admission() -> VisionAdmission | None:
        # Made in the lifespan (it needs the event loop); a scrape before that sees an empty queue.
        found: VisionAdmission | None = getattr(app.state, "admission", None)
        return found

    metrics = Metrics(
        queue_depth=lambda: float(found.waiting) if (found := admission()) else 0.0,
        vision_running=lambda: float(found.running) if (found := admission()) else 0.0,
        index_size=lambda: float(len(service.recognizer)),
    )
    app.state.metrics = metrics
    app.include_router(vendor.router)
    app.include_router(appkeys.router)
    app.include_router(files.router)
    describe_form_endpoints(app)
    console.install(app)  # web console pages + the extensions only it uses
    docs.install(app)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_request: Request, _exc: BodyTooLarge) -> Response:
        return Response(TOO_LARGE_BODY, status_code=413, media_type="application/json")

    @app.exception_handler(BodyTimeout)
    async def body_timeout(_request: Request, _exc: BodyTimeout) -> Response:
        headers = {"Connection": "close"}
        return Response(BODY_TIMEOUT, status_code=408, media_type="application/json", headers=headers)

    @app.get("/metrics")
    async def metrics_text(request: Request) -> Response:
        refusal = may_read_metrics(request, settings.metrics_token)
        if refusal is not None:
            return refusal
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        # The database and the blob store: a server that cannot reach either would answer API calls and
        # /files with errors, so a load balancer should send its work elsewhere.
        dependencies = await anyio.to_thread.run_sync(service.dependencies)
        ready = service.ready and all(dependency["ok"] for dependency in dependencies.values())
        body = {
            "status": "ready" if ready else "not ready",
            "index": service.ready,
            "database": dependencies["database"]["ok"],
            "dependencies": dependencies,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    app.add_middleware(
        BodySizeLimit,
        max_bytes=service.settings.max_request_bytes,
        timeout=service.settings.body_timeout,
    )
    # Outermost, so even a 413 or 408 answer carries a request id and gets its access log line.
    app.add_middleware(RequestContext)
    return app
