"""Signing in to the operator console over HTTP, as a browser does (form, cookie, CSRF)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx

from .api_support import ADMIN_KEY, Service

_CSRF = re.compile(r"name='csrf' value='([0-9a-f]+)'")


@contextlib.asynccontextmanager
async def signed_in(service: Service, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client without Authorization that signed in with the admin key (cookie kept)."""
    async with httpx.AsyncClient(base_url=service.url, timeout=15, headers=headers) as client:
        answer = await client.post("/console/login", data={"key": ADMIN_KEY, "next": "/console"})
        assert answer.status_code == 303, answer.text
        yield client


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)
