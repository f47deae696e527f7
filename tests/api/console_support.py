"""Signing in to the operator console over HTTP, as a browser does (form, cookie, CSRF)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

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


class _Forms(HTMLParser):
    """Each form's fields (name, value) and the text of its buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[list[tuple[str, str]], str]] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append(([], ""))
        elif tag == "input" and self.forms and found.get("name"):
            self.forms[-1][0].append((found["name"] or "", found.get("value") or ""))
        self._in_button = tag == "button" or (self._in_button and tag != "form")

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button and self.forms:
            fields, label = self.forms[-1]
            self.forms[-1] = (fields, label + data)


def form_fields(page: str, button: str) -> dict[str, list[str]]:
    """What a browser submits from the form whose button reads ``button``."""
    parser = _Forms()
    parser.feed(page)
    matching = [fields for fields, label in parser.forms if label.strip() == button]
    assert len(matching) == 1, f"{len(matching)} forms with a {button!r} button"
    submitted: dict[str, list[str]] = {}
    for name, value in matching[0]:
        submitted.setdefault(name, []).append(value)
    return submitted
