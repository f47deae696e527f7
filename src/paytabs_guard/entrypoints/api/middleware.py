"""The outermost middleware: request id, access log, RED metrics, and a last-resort 500.

Pure ASGI (no ``BaseHTTPMiddleware``), so streaming bodies and cancellation pass untouched.

* ``X-Request-ID``: a sane incoming value (1-128 of ``A-Za-z0-9._:-``) is kept, anything else
  is replaced by a fresh one; it is on every response and bound to every log line of the request.
* Metrics use the matched route's *template* (``/payments/v2/{payment_id}``), so the label set
  stays bounded; unmatched paths count as ``unmatched``.
* An exception no handler mapped becomes a problem+json 500 with the request id, logged once
  with its traceback here (so uvicorn does not log it a second time).
* A request the app let go unanswered because its client left is logged and counted as 499,
  not as a server error. One it still answered after its client left is logged with the
  status answered: uvicorn says "disconnected" only to a ``receive`` that nothing calls once
  the body is read, and asking it before each answer would still race the client's close.
* A request cancelled before its answer started (a shutdown past its grace period) gets a
  problem+json 503 ``interrupted``, not uvicorn's plain-text 500.
* A handler may add what it decided to the access line (``add_to_access_line``): a request
  is one line, and a line is a tenth of a callback's CPU.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paytabs_guard import tracing
from paytabs_guard.metrics import OTHER_METHOD, UNMATCHED_ROUTE, Metrics, method_label
from paytabs_guard.observability import (
    Redactor,
    bind_request_context,
    clear_request_context,
    get_logger,
)

from .errors import internal_error, interrupted, shown_cut
from .problems import problem_response

HEADER: Final = "x-request-id"
#: The status logged and counted for a request whose client left before it was answered (a
#: body cut short, a broken chunk uvicorn answered itself): nginx's "client closed request".
#: Counted as a 500, every dropped upload paged whoever watches the 5xx rate.
CLIENT_CLOSED: Final = 499
_VALID: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_LOGS_AS_IS: Final = Redactor()

_NOSNIFF: Final = (b"x-content-type-options", b"nosniff")
_NO_STORE: Final = (b"cache-control", b"no-store")
log = get_logger("paytabs_guard.access")
#: Where a handler leaves the fields its request's access line adds (in the scope's state).
_ACCESS_FIELDS: Final = "access_fields"
#: What the access line itself says; a handler's fields never replace these.
_OWN_FIELDS: Final = frozenset({"method", "route", "status", "duration_ms", "client"})


def add_to_access_line(scope_state: dict[str, object], /, **fields: object) -> None:
    """Have the request's access line carry ``fields`` too (the outcome a handler decided,
    the payment it touched), instead of a line of the handler's own. ``scope_state`` is the ASGI
    scope's ``state`` (``request.scope["state"]``)."""
    clash = _OWN_FIELDS.intersection(fields)
    if clash:
        raise ValueError(f"the access line's own fields: {sorted(clash)}")
    scope_state[_ACCESS_FIELDS] = fields


def new_request_id() -> str:
    # 20 characters of base32 (a-z, 2-7), 100 random bits. Hex ids held a run of 13 digits
    # now and then, and when it passed the Luhn check the log redactor hid it as a card
    # number: the access line no longer matched the X-Request-ID the client saw.
    return "req_" + base64.b32encode(secrets.token_bytes(13)).decode("ascii")[:20].lower()


def incoming_request_id(scope: Scope) -> str | None:
    """A client's ``X-Request-ID`` if it is sane and holds nothing the logs would redact
    (a card number, a token): otherwise the request gets an id of its own, so the id in the
    answer and the one in the logs are the same."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID.fullmatch(text) and _LOGS_AS_IS.scrub(text) == text else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's template, the label of the request metrics. FastAPI's routes put
    themselves in the scope; Starlette's own (the OpenAPI document FastAPI adds, the docs'
    assets mount) leave only their endpoint, so those are found by it."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return UNMATCHED_ROUTE
    mounted = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    if mounted:
        return f"{mounted}/{{path}}"
    for candidate in getattr(scope.get("app"), "routes", ()):
        if getattr(candidate, "endpoint", None) is endpoint:
            found = getattr(candidate, "path", None)
            if isinstance(found, str):
                return found
    return UNMATCHED_ROUTE


class RequestContextMiddleware:
    """See the module docstring. ``metrics_of()`` is asked per request: the app may build its
    container (and metrics) only after start-up."""

    def __init__(self, app: ASGIApp, metrics_of: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics_of = metrics_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        method = scope.get("method", "GET")
        bind_request_context(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        # The merchant API's answers hold payments and their customers' details: no browser
        # cache or shared proxy may keep them (an answer that says how to cache itself wins).
        merchant_api = scope["path"].startswith("/payments/")

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                # No browser may read a JSON or problem answer as script or HTML (pages set it).
                names = {name for name, _ in headers}
                if _NOSNIFF[0] not in names:
                    headers.append(_NOSNIFF)
                if merchant_api and _NO_STORE[0] not in names:
                    headers.append(_NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        with _server_span(scope, method) as span:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled error", method=method, route=route_template(scope))
                if not response_started:
                    respond = problem_response(internal_error(), request_id)
                    await respond(scope, receive, send_with_id)
            except asyncio.CancelledError:
                # The server's shutdown cancels what outlived its grace period; it would answer
                # a plain-text 500 itself. A problem that says what to do instead, then on.
                if not response_started:
                    respond = problem_response(interrupted(), request_id)
                    await respond(scope, receive, send_with_id)
                raise
            finally:
                seconds = time.perf_counter() - started
                if not response_started:
                    status = CLIENT_CLOSED  # no exception, and nothing sent: nobody to answer
                route = route_template(scope)
                _end_server_span(span, method, route, status)
                metrics = self.metrics_of()
                if metrics is not None:
                    metrics.observe_request(route, method, status, seconds)
                added = scope["state"].get(_ACCESS_FIELDS) or {}
                log.info(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                    client=_client_id(scope),
                    **added,
                )
                clear_request_context()


def _server_span(scope: Scope, method: str) -> tracing.Span:
    """The request's server span (a child of the caller's ``traceparent``, if sent), named by
    the method until the route is known; a new payment scope for the spans inside."""
    if not tracing.ENABLED:
        return tracing.NO_SPAN
    traceparent = tracestate = None
    for name, value in scope.get("headers", ()):
        if name == b"traceparent":
            traceparent = value.decode("latin-1")
        elif name == b"tracestate":
            tracestate = value.decode("latin-1")
    label = method_label(method)
    span = tracing.span(
        _span_method(label), "server", parent=(traceparent, tracestate), new_scope=True
    )
    # As OpenTelemetry's HTTP conventions name them: a method outside HTTP's own is ``_OTHER``
    # (the one sent beside it), and its span is named ``HTTP``, so that anyone sending the
    # parser's thirty other methods makes no span names of their own in the backend.
    span.set("http.request.method", label)
    if label == OTHER_METHOD:
        span.set("http.request.method_original", method)
    # the path, never the query string: the browser return's signature travels in it; and a
    # card number sent where an id goes hidden, as the logs and the problem hide it
    span.set("url.path", _span_path(str(scope.get("path", ""))))
    return span


#: The longest path a span shows whole; no route of ours takes one near it (ids are <= 64).
_SPAN_PATH_CHARS: Final = 1024


def _span_path(path: str) -> str:
    """``path`` with its card numbers hidden, a long one cut first (``shown_cut``): any client
    could send 32 KiB of ``/1/1/1...``, 0.36 s of event loop a request with tracing on."""
    return shown_cut(path, _SPAN_PATH_CHARS)


def _end_server_span(span: tracing.Span, method: str, route: str, status: int) -> None:
    if span is tracing.NO_SPAN:
        return
    span.rename(f"{_span_method(method_label(method))} {route}")
    span.set("http.route", route)
    span.set("http.response.status_code", status)
    if status >= 500:
        span.fail(f"HTTP {status}")


def _span_method(label: str) -> str:
    return "HTTP" if label == OTHER_METHOD else label


def _client_id(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    value = state.get("client_id")
    return value if isinstance(value, str) else None
