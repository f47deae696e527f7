"""``/_sim/docs``: the simulator's Swagger UI without internet.

The scripts, styles and favicon come from the installed ``fastapi-offline`` package, served
under ``/_sim/docs-assets``, instead of a CDN. (The simulator does not import paytabs_guard, so
this is its own small copy of the service's ``docs_pages``.)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL: Final = "/_sim/docs"
ASSETS_URL: Final = "/_sim/docs-assets"
# Only this origin (plus the inline code and data: images the bundle uses): nothing leaves.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def install_docs(app: FastAPI) -> None:
    """Add ``/_sim/docs`` and its assets to an app built with ``docs_url=None``."""
    assets = Path(str(files("fastapi_offline") / "static"))
    app.mount(ASSETS_URL, StaticFiles(directory=assets), name="sim-docs-assets")
    openapi_url = app.openapi_url or "/_sim/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title="PayTabs simulator - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page
