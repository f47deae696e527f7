"""The merchant API's front door: authenticate, then read a bounded body, before any parsing.

Pure ASGI, inside the request-context middleware and outside FastAPI, so nothing has read a
byte of the body when these checks run. For every request that carries a body (a
``Content-Length`` above 0, or ``Transfer-Encoding``):

1. Under ``/payments/v2/`` the ``Authorization`` header is checked first (401; 429 for an
   address blocked for sending wrong keys: key_guesses.py). A stranger's body is never read,
   whatever its size or shape.
2. A declared ``Content-Length`` over API_MAX_BODY_BYTES is answered 413 at once, unread, even
   if no body follows (the client may still be waiting to send it).
3. Two ``Content-Type`` headers are a 400 ``invalid-content-type`` (not picked from), on
   every path. Under ``/payments/v2/`` the body must be declared JSON (``application/json`` or a
   ``+json`` type; 415 otherwise) and not compressed (a ``Content-Encoding`` other than
   ``identity`` is a 415 too), before a byte of it is read.
4. The body is read with the same counting as the callback receiver (``body_limit``): reading
   stops as soon as the total passes the limit (413), so a chunked upload holds at most the
   limit in memory, and a body not whole within ``body_read_seconds`` is a 408.
5. A body FastAPI would decode as JSON is checked as strict JSON first (``strict_json``).
   Python's decoder keeps the last of two equal keys, so ``{"amount": "1.00", "amount":
   "2.00"}`` would charge 2.00 where a proxy, a log or the merchant's own code read 1.00. It
   also takes ``NaN``, lone surrogates and UTF-16, and fails deep nesting and invalid UTF-8
   with a bare "error parsing the body". A ``\\u0000`` in a string would reach PostgreSQL,
   which cannot store it in text (a 500). Each of these is a 400 ``invalid-payload`` with a
   ``reason`` here. A body that is not JSON at all goes on to FastAPI, whose 422 points at
   the position of the error. The body read is then handed to the app as one message.

Before all of that, on every path: a HEAD request runs as the GET it asks about, without the
body; a NUL in the path or the query string (``%00``) is a 400
``invalid-url``: it would reach a lookup as a parameter, and PostgreSQL refuses it in text;
so is a path in disguise (``/%6detrics``), a target in absolute form (``GET
http://host/metrics``) and one with a fragment (``GET /metrics#x``), which edge rules on the
plain path do not match;
and a path ending in a slash is answered here (no route has one: ``_trailing_slash``).
Then a PayTabs callback goes straight to its receiver (``callbacks.answer_callback``).

Refusing without reading the whole body ends the connection afterwards (``serve``'s protocol,
``http_head_limit.py``, lingers briefly and closes), so the rest of an oversized upload is
never drained.

The callback and the browser return are left to their own receivers: they apply the same
``body_limit`` functions with WEBHOOK_MAX_BODY_BYTES, and count rejections in the webhook
metrics and security log.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Final

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import problems
from .auth import API_CLIENT
from .body_limit import (
    BodyTooLarge,
    BodyTooSlow,
    InvalidContentLength,
    coded,
    declared_length,
    read_limited,
)
from .callbacks import WEBHOOK_PATH, answer_callback
from .problems import Problem, problem_response
from .rate_limit import request_source
from .runtime import Runtime
from .strict_json import InvalidJson, declares_json, parse_strict_json, utf8_charset

AUTHENTICATED_PREFIX: Final = "/payments/v2/"
OWN_BODY_LIMIT: Final = frozenset({WEBHOOK_PATH, "/payments/v2/return"})
#: Pages people type by hand, perhaps with a trailing slash (``_trailing_slash``).
PAGES: Final = frozenset({"/console", "/docs", "/redoc"})
CONSOLE_PREFIX: Final = "/console/"


def carries_body(headers: Headers) -> bool:
    """Whether the request announces a body (HTTP/1.1: a non-zero length or chunked)."""
    if "transfer-encoding" in headers:
        return True
    lengths = headers.getlist("content-length")
    # "00" is a length of zero too (digits, leading zeros allowed): no body, so no media type
    return bool(lengths) and any(value.strip().lstrip("0") for value in lengths)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class FrontDoorMiddleware:
    """See the module docstring. ``runtime_of()`` is asked per request: the app may build its
    runtime only after start-up (before that, requests pass through untouched)."""

    def __init__(self, app: ASGIApp, runtime_of: Callable[[], Runtime | None]) -> None:
        self.app = app
        self.runtime_of = runtime_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            # HTTP requires HEAD wherever GET is served (RFC 9110, 9.3.2), and monitors and
            # proxies use it; FastAPI's routes answer it 405. It runs as the GET, whose
            # headers (Content-Length included) go out without the body.
            scope = {**scope, "method": "GET"}
            send = _headers_only(send)
        if _nul_in_url(scope):
            await self._refuse(problems.nul_in_url(), scope, receive, send)
            return
        if _disguised_path(scope):
            await self._refuse(problems.disguised_path(), scope, receive, send)
            return
        if _absolute_form(scope):
            await self._refuse(problems.absolute_form(), scope, receive, send)
            return
        if _fragment(scope):
            await self._refuse(problems.fragment_in_target(), scope, receive, send)
            return
        if _bad_host(scope):
            await self._refuse(problems.bad_host(), scope, receive, send)
            return
        if scope["path"].endswith("/") and scope["path"] != "/":
            await _trailing_slash(scope, receive, send)
            return
        runtime = self.runtime_of()
        if runtime is not None and scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
            await answer_callback(runtime, scope, receive, send)
            return
        if runtime is None or scope["path"] in OWN_BODY_LIMIT:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not carries_body(headers):
            await self.app(scope, receive, send)
            return
        limit = runtime.container.settings.api_max_body_bytes
        try:
            merchant_api = scope["path"].startswith(AUTHENTICATED_PREFIX)
            if merchant_api:
                peer = scope.get("client")
                source = request_source(
                    peer[0] if peer else None,
                    headers.getlist("x-forwarded-for"),
                    runtime.container.settings.trusted_proxies,
                )
                client = runtime.key_guesses.authenticate(
                    runtime.api_keys, headers.getlist("authorization"), source
                )
                state = scope.setdefault("state", {})
                state["client_id"] = client.id  # the access line names the key
                state[API_CLIENT] = client  # the routes' dependencies take it from here
            declared_length(headers.getlist("content-length"), limit)
            if len(headers.getlist("content-type")) > 1:
                # The first one was read (415 or JSON); a proxy reading the last saw another
                # body. Refused, as two Authorization or Idempotency-Key headers are.
                raise problems.repeated_content_type()
            is_json = declares_json(headers.get("content-type"))
            if merchant_api:
                _check_merchant_body_headers(headers, is_json)
            within = runtime.options.body_read_seconds
            body = await read_limited(_chunks(receive), limit, within=within)
            if body and is_json:
                _check_strict(body, limit)
        except Problem as problem:
            await self._refuse(problem, scope, receive, send)
            return
        except BodyTooLarge:
            await self._refuse(problems.payload_too_large(limit), scope, receive, send)
            return
        except InvalidContentLength:
            await self._refuse(problems.invalid_content_length(), scope, receive, send)
            return
        except BodyTooSlow as slow:
            await self._refuse(problems.body_too_slow(slow.seconds), scope, receive, send)
            return
        except ClientDisconnect:
            return  # nobody is left to answer
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _refuse(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = (scope.get("state") or {}).get("request_id")
        await problem_response(problem, request_id)(scope, receive, send)


def _headers_only(send: Send) -> Send:
    """``send`` for a HEAD request: the response's start as it is, its body left out."""

    async def send_headers(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return send_headers


async def _trailing_slash(scope: Scope, receive: Receive, send: Send) -> None:
    """No route ends in a slash. Starlette redirected ``/payments/v2/create/`` with a 307 to
    an absolute URL built from the Host header (``http://evil.example/...`` when a client or
    proxy sent that Host). A page people type (``/console/``, ``/docs/``) gets a relative 308
    to the path without the slash; any other path a 404 problem, naming the path without the
    slash under the API. Only those pages are redirected: ``//evil.example/`` (or
    ``/%2fevil.example/``) would otherwise become ``Location: //evil.example``, which a
    browser follows to another site."""
    path = scope["path"].rstrip("/") or "/"
    if path in PAGES or path.startswith(CONSOLE_PREFIX):
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{path}?{query}" if query else path
        await RedirectResponse(target, status_code=308)(scope, receive, send)
        return
    if path.startswith(AUTHENTICATED_PREFIX.rstrip("/")):
        problem = problems.trailing_slash(path)
    else:
        problem = problems.not_found()
    request_id = (scope.get("state") or {}).get("request_id")
    await problem_response(problem, request_id)(scope, receive, send)


def _nul_in_url(scope: Scope) -> bool:
    # Whatever route would take it, a NUL ends up in a query parameter or a path parameter,
    # and PostgreSQL refuses it in text: refused here, on every path, before any lookup.
    return "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")


# Percent-encodings of what never needs encoding (RFC 3986 2.3, unreserved) and of "/": the
# router sees the decoded path, a proxy or WAF rule often the raw one, so "/%6detrics" passed
# an edge rule for "/metrics" and reached it; "%2F" joined segments the edge saw apart.
_DISGUISED = re.compile(rb"%(?:[46][1-9a-fA-F]|[57][0-9aA]|3[0-9]|2[dDeEfF]|5[fF]|7[eE])")


def _disguised_path(scope: Scope) -> bool:
    raw: bytes | None = scope.get("raw_path")
    return raw is not None and b"%" in raw and _DISGUISED.search(raw) is not None


def _absolute_form(scope: Scope) -> bool:
    # "GET http://evil.example/metrics HTTP/1.1": RFC 9112 (3.2.2) has servers accept the
    # absolute form, but only a proxy needs it, and an edge rule on the target ("^/metrics")
    # does not match it while the router served "/metrics". Refused like "/%6detrics".
    # (``OPTIONS *``, the asterisk form, is refused too: nothing here answers it.)
    raw: bytes | None = scope.get("raw_path")
    return not scope["path"].startswith("/") or (raw is not None and not raw.startswith(b"/"))


def _fragment(scope: Scope) -> bool:
    # "GET /metrics#x": no client sends a fragment (RFC 9112, 3.2: a target is a path and a
    # query), and some proxies take "#x" for part of the path, so an edge rule for "/metrics"
    # passed it while httptools dropped the fragment and the router served "/metrics".
    raw: bytes | None = scope.get("raw_path")
    return raw is not None and b"#" in raw


def _bad_host(scope: Scope) -> bool:
    # RFC 9112 (3.2): a server answers 400 to an HTTP/1.1 request without Host, and to any
    # request with more than one; httptools lets both through. Nothing here reads Host, but
    # a proxy in front may route or log by one while a second one reaches us.
    hosts = sum(1 for name, _ in scope["headers"] if name == b"host")
    return hosts > 1 or (hosts == 0 and scope.get("http_version") == "1.1")


def _check_merchant_body_headers(headers: Headers, is_json: bool) -> None:
    """Every body the merchant API takes is JSON, sent as it is: refused before it is read
    (module docstring, 3). FastAPI would read a text/plain body as no object at all (a 422
    saying the body is not an object, though it is) and ignore a Content-Encoding, taking
    a compressed body for bad UTF-8 and a body marked compressed as plain."""
    if not is_json or not utf8_charset(headers.get("content-type")):
        raise problems.unsupported_media_type(("application/json",))
    if coded(headers.getlist("content-encoding"), headers.getlist("transfer-encoding")):
        raise problems.unsupported_content_encoding()


def _check_strict(body: bytes, limit: int) -> None:
    """Raise the 400 for a JSON body that Python's decoder would read leniently (module
    docstring, 5). Strings are bounded only by the body limit: the schema's own checks say
    which field is too long."""
    try:
        parse_strict_json(body, max_string=limit, allow_nul=False)
    except InvalidJson as error:
        if error.reason != "invalid_json":
            raise problems.invalid_payload(error.reason) from None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands out ``body`` whole, then defers to the server's."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
