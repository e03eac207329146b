"""The web console: its static files at ``/console/``, and the extension only it needs.

- ``POST /GetImageDetail`` (owner-authenticated, form fields like every endpoint): a target's keypoints with
  how often each was re-found in the rating self-test, and the rating's inputs.

Previews for the grid (``/files/{key}/thumbnail``) are served by :mod:`imagecloud.api.files`.

The pages are plain ES modules and CSS shipped inside the package, so the console works with no network
and no front-end build.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from imagecloud.api.forms import Form
from imagecloud.api.vendor import in_thread, vendor_endpoint
from imagecloud.service.service import Service

router = APIRouter()

# The pages load nothing from elsewhere and never evaluate strings: a script injected through user data
# could not run even if some code path forgot to escape it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class _ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        # Revalidate every load (ETag/Last-Modified make that cheap) so an upgrade is never half-applied.
        response.headers["Cache-Control"] = "no-cache"
        return response


@vendor_endpoint("/GetImageDetail", multipart_only=False, on=router)
async def get_image_detail(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.image_detail,
        form.get("username"),
        form.get("secretkey"),
        form.get("channel"),
        form.get("identifier"),
    )
    # The self-test re-renders and re-extracts the rating views: image work, so it waits in the same queue.
    return await in_thread(request, call, vision=True)


def static_dir() -> Path:
    # Shipped as package data next to the code (pyproject.toml), so an installed wheel serves them too.
    return Path(__file__).resolve().parent.parent / "console"


def install(app: FastAPI) -> None:
    """Add the console routes and pages to ``app``."""
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        # Someone opening the server's address in a browser wants the console, not a 404.
        return RedirectResponse("/console/", status_code=307)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # Browsers ask for it on every page that names no icon (and log the 404 as an error otherwise).
        return FileResponse(static_dir() / "logo.svg", media_type="image/svg+xml")

    @app.get("/console", include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=308)

    app.mount("/console", _ConsoleFiles(directory=static_dir(), html=True), name="console")
