"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) that work without internet.

FastAPI's own pages load their scripts, styles, favicon and (for ReDoc) fonts from CDNs, so they
are blank on a machine without internet or behind a strict egress policy. Here every asset comes
from the installed ``fastapi-offline`` package, served under ``/docs-assets``; the pages make no
request beyond this service (a browser test checks that). ReDoc's bundle hard-codes one CDN
address, the "API docs by Redocly" logo in its sidebar, with no option to turn it off; the
bundle is served with that address emptied (:func:`redoc_bundle`), so no request is made and
the bundle's own error handler drops the image, leaving the text link. The Content-Security-
Policy still allows only this origin (and inline code, data: images and blob: workers, which
the bundles use), and no other site may frame the pages (clickjacking: they have buttons that
send requests with whatever the visitor types).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse, Response

ASSETS_URL: Final = "/docs-assets"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # For browsers older than CSP's frame-ancestors.
    "X-Frame-Options": "DENY",
}
REDOC_BUNDLE: Final = f"{ASSETS_URL}/redoc.offline.js"
_REDOC_LOGO: Final = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def _offline(page: HTMLResponse) -> HTMLResponse:
    """FastAPI's page with our headers, and ``lang`` on ``<html>`` (FastAPI leaves it out;
    screen readers and hyphenation need it: the pages' own words are English)."""
    body = bytes(page.body).replace(b"<html>", b'<html lang="en">', 1)
    return HTMLResponse(body, status_code=page.status_code, headers=HEADERS)


@cache
def redoc_bundle() -> bytes:
    """ReDoc's bundle with the sidebar logo's CDN address emptied: an ``<img src="">`` makes
    no request and fires ``error``, on which the bundle itself removes the image. Read once
    (about 1 MB), on first use."""
    bundle = (assets_directory() / "redoc.standalone.js").read_bytes()
    return bundle.replace(_REDOC_LOGO, b"")


def assets_directory() -> Path:
    """The folder of the Swagger UI and ReDoc bundles inside the installed package."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI, title: str) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to an app built with ``docs_url=None`` and
    ``redoc_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"

    # Before the mount, which would otherwise answer every path under ASSETS_URL.
    @app.get(REDOC_BUNDLE, include_in_schema=False)
    async def redoc_offline_bundle() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript; charset=utf-8")

    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        # Where a newcomer's browser goes first: the API reference, which links the rest.
        # A path, never a URL built from the Host header.
        return RedirectResponse("/docs", status_code=307)

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
                redoc_js_url=REDOC_BUNDLE,
                redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
