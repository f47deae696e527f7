"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) that work without internet.

FastAPI's own pages load their scripts, styles, favicon and (for ReDoc) fonts from CDNs, so they
are blank on a machine without internet or behind a strict egress policy. Here every asset comes
from the installed ``fastapi-offline`` package, served under ``/docs-assets``; the pages make no
request beyond this service (a browser test checks that). ReDoc's sidebar has a "by Redocly" logo
that it always loads from its CDN; the pages' Content-Security-Policy allows only this origin
(and inline code, data: images and blob: workers, which the bundles use), so the browser drops
that request before it leaves the machine.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_URL: Final = "/docs-assets"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def assets_directory() -> Path:
    """The folder of the Swagger UI and ReDoc bundles inside the installed package."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI, title: str) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to an app built with ``docs_url=None`` and
    ``redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
                # No badge that asks validator.swagger.io about our document.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{title} - ReDoc",
                redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
