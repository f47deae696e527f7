"""The operator console at ``/console``: server-rendered pages for people (docs/console.md).

``routes`` holds the routes, ``session`` the admin sign-in and CSRF, ``pages`` and
``timeline`` the rendering, ``chart`` the breakers' SVG, ``words`` English and Arabic.
"""

from __future__ import annotations

from fastapi import FastAPI

from .routes import Refused, refused_page, router


def install_console(app: FastAPI) -> None:
    """Add the console's routes, and its answer to a request without an operator."""
    app.include_router(router)
    app.add_exception_handler(Refused, refused_page)
