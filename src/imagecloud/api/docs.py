"""The API reference at ``/docs``: Swagger UI over /openapi.json, served from this process.

FastAPI's own page loads Swagger UI from a CDN, which a self-hosted server behind a firewall (or a
developer on a train) cannot reach. The same files come here from the ``fastapi-offline`` package, which
vendors them, and are served under ``/docs/assets``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve the reference page and its assets (the app must be made with ``docs_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def reference() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="imagecloud API reference",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url="/console/logo.svg",
            # Operations in the order they are described (vendor endpoints first), fields shown expanded.
            swagger_ui_parameters={"defaultModelsExpandDepth": 0, "tryItOutEnabled": False},
        )
