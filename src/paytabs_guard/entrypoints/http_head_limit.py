"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

uvicorn buffers a request's headers without a limit when it runs on httptools (its h11
fallback stops at 16 KiB): a client could send megabytes of headers, or a hundred thousand of
them, to any path, unauthenticated, and each was kept in memory and handed to the app. Here
the head may take ``MAX_HEAD_BYTES``; past that the connection gets a 431 problem and is
closed, before the app sees anything. 32 KiB is what nginx allows a head by default (four
8 KiB buffers); the service's own requests need well under 2 KiB.

A head must also arrive whole within ``head_seconds`` (30 s, as long as nginx's
``client_header_timeout`` takes by default) of the connection opening or the previous answer:
uvicorn has no timer before a connection's first request and stops its keep-alive timer at any
byte, a blank line included (the parser skips those), so a client sending a header a minute
(slowloris), blank lines, or nothing at all held its connection forever. Past the deadline a
client that began a head gets a 408 problem; the connection is closed either way.

Pipelined requests wait their turn in uvicorn's queue, and uvicorn read on after each answer
whatever the queue held: a client that sent thousands of small requests without reading the
answers had the worker keep them all (hundreds of megabytes from a few connections, never
given back to the system). Here the connection reads no further while requests wait, and at
most ``MAX_PIPELINED`` wait: past that the requests already read are answered and the
connection is closed; the rest were never read, so the client may resend them.

A chunked body's framing is bounded too: uvicorn merged the trailer fields after the last
chunk into the request's headers, with no limit and after the head's bound had been checked, so
one unauthenticated callback (whose body is read before anything else is checked) sent hundreds
of megabytes of trailers within the body's 30 s and the worker grew by gigabytes. Trailers are
not headers (RFC 9110, 6.5.1: never merged into them unless known to be safe), so they are
dropped, and what a body brings besides its bytes (chunk sizes, extensions, trailers) may take
``MAX_HEAD_BYTES`` plus ``_CHUNK_FRAMING_BYTES`` per chunk: past that, a 431 and the
connection is closed (the app's request ends as a disconnect).

An answer that comes before the request's body was read whole (a 401, 413 or 415 refusal)
ends the connection: uvicorn would otherwise read and discard the rest, and a client declaring
a body of a hundred gigabytes kept a core busy for as long as it cared to send. The server
finishes its side and reads on only briefly (the lingering close below), then closes.

A request target in absolute form (``GET http://host/metrics``, which only a proxy needs), or
with a fragment (``GET /metrics#x``, which HTTP does not allow in a target), reached the app
as its path alone, indistinguishable from ``/metrics``: its ``raw_path`` is the target as
sent, so the front door can refuse it (``front_door._absolute_form``, ``_fragment``).

A request the parser refuses (a control character in a header, a bad chunk size, both
``Content-Length`` and ``Transfer-Encoding``) got uvicorn's plain-text 400 with no request id;
it is a problem too, with an ``X-Request-ID`` like every other answer (uvicorn still logs its
warning). The app never sees these requests, so each refusal writes its own access line here
(``paytabs_guard.access``, ``route`` null and ``refused`` naming the problem): an operator
looking for a client's malformed or oversized requests finds them where the others are.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from paytabs_guard.entrypoints import draining
from paytabs_guard.entrypoints.api.middleware import new_request_id
from paytabs_guard.entrypoints.api.problems import PROBLEM_TYPE_BASE, Problem, problem_response
from paytabs_guard.observability import get_logger

access_log = get_logger("paytabs_guard.access")

MAX_HEAD_BYTES: Final = 32 * 1024
MAX_PIPELINED: Final = 32
# The lingering close (``_linger``) reads and drops at most this much, for at most this long:
# enough for a client that sends a few megabytes before it reads the answer (most do), and a
# bound on a client that would send for ever.
_DRAIN_BYTES: Final = 16 * 1024 * 1024
_DRAIN_SECONDS: Final = 5.0
# What a chunk's own framing takes at most without extensions: 16 hex digits of size and two
# CRLFs, with room to spare (module docstring).
_CHUNK_FRAMING_BYTES: Final = 24

_TOO_LARGE: Final = Problem(
    "request_header_fields_too_large",
    "Request header fields too large",
    431,
    f"Send at most {MAX_HEAD_BYTES // 1024} KiB of request line and headers.",
)
_INVALID: Final = Problem(
    "invalid_http_request",
    "Invalid HTTP request",
    400,
    "The request is not valid HTTP/1.1 (its request line, a header or the chunked "
    "encoding of its body); send it as a standard HTTP client would.",
)


_FRAMING_TOO_LARGE: Final = Problem(
    "request_header_fields_too_large",
    "Request header fields too large",
    431,
    f"Send a chunked body without chunk extensions and with at most "
    f"{MAX_HEAD_BYTES // 1024} KiB of trailer fields.",
)


class _HeadTooLarge(Exception):
    """Raised from the parser's callback: httptools stops, and uvicorn answers through
    ``send_400_response``, which sends the 431 instead."""


class _PipelineFull(Exception):
    """Raised from the parser's callback: httptools stops reading the requests queued behind
    ``MAX_PIPELINED`` others (see :meth:`BoundedHttpToolsProtocol.data_received`)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring. Two checks, because a read can hold a whole head or only a
    part of one: a head that arrives complete is measured when its headers are (name, value
    and separators, plus the URL); while a head is still incomplete after a read, the bytes
    read so far count, so a slow or endless head is cut at the bound too."""

    head_seconds: float = 30.0
    """How long a head may take, counted from the connection opening or the previous answer
    (module docstring)."""

    _head_open = False
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None
    _too_large = False
    _pipeline_full = False
    _draining = False
    _drain_left = 0
    _in_body = False
    _message_count = 0
    _body_fed = 0
    _framing_bytes = 0
    _chunks = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def shutdown(self) -> None:
        # The server's graceful shutdown begins: requests that only wait stop (draining.py).
        draining.of_server(self.server_state).set()
        super().shutdown()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = 0
        self._in_body = False
        self._message_count += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_open:
            super().on_header(name, value)
        # else a trailer field, after a chunked body: not merged into the headers the app
        # has (module docstring); its bytes are counted in ``data_received``.

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_body(self, body: bytes) -> None:
        self._body_fed += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._stop_head_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge
        if len(self.pipeline) >= MAX_PIPELINED:
            self._pipeline_full = True
            raise _PipelineFull
        super().on_headers_complete()
        self._in_body = True
        self._body_fed = self._framing_bytes = self._chunks = 0
        # How the app learns that this server began to shut down (draining.py).
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[draining.EXTENSION] = draining.of_server(self.server_state)
        target = self.url.partition(b"?")[0]
        if (not target.startswith(b"/") or b"#" in target) and "raw_path" in self.scope:
            # uvicorn hands the app httptools' parse of the target, its path only: "GET
            # http://evil.example/metrics" looked like "GET /metrics", and so did "GET
            # /metrics#x" (a fragment, which no client sends). The scope (the request's
            # cycle holds this dict; its app has not run yet) gets the target as received, as
            # h11 gives it and as ASGI defines raw_path, and the front door refuses it.
            self.scope["raw_path"] = target

    def on_response_complete(self) -> None:
        # With no request queued, the answer that just ended is the newest request's.
        last = not self.pipeline and not self.transport.is_closing()
        if last and (self.cycle.more_body or self._pipeline_full):
            # Answered before its body was read whole: do not read the rest only to drop it.
            # Or the last of the requests read before the queue overflowed: nothing more is.
            self.server_state.total_requests += 1
            self._linger()
            return
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.pipeline or self._pipeline_full:
            # uvicorn resumes reading after every answer: not while requests still wait (or
            # once the queue overflowed), or a client that never reads its answers fills it.
            self.flow.pause_reading()
        elif self._head_timer is None:
            self._start_head_timer()  # the next head, or an idle connection, is timed again

    def send_400_response(self, msg: str) -> None:
        if self._pipeline_full:
            # Not a bad request: too many ahead of it. The requests already queued are
            # answered, nothing more is read, and the last answer ends the connection.
            self.flow.pause_reading()
            return
        if self._too_large:
            self._refuse()
        else:
            del msg  # uvicorn's "Invalid HTTP request received.": the problem says as much
            self._answer(b"400 Bad Request", _INVALID)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._draining:
            self._drain_left -= len(data)
            if self._drain_left <= 0:
                self.transport.close()
            return
        if self._pipeline_full:
            return  # bytes already on their way when reading stopped
        in_body, message, body_fed = self._in_body, self._message_count, self._body_fed
        self._feed(data)
        if in_body and self._in_body and message == self._message_count:
            self._count_framing(len(data) - (self._body_fed - body_fed))
        if not self._head_open or self.transport.is_closing():
            return
        # A head still incomplete after a read. Its timer runs from the connection's opening or
        # the last answer; a head begun behind a pipelined request is timed from now.
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_open = False
            self._stop_head_timer()
            self._refuse()

    def _count_framing(self, size: int) -> None:
        """Count what a read in a body's middle brought besides the body (module docstring)."""
        self._framing_bytes += size
        if self._framing_bytes <= MAX_HEAD_BYTES + _CHUNK_FRAMING_BYTES * self._chunks:
            return
        self._in_body = False
        if self.transport.is_closing():
            return
        if self.cycle.response_started:
            self.transport.close()  # the app is answering: nothing else can be said
            return
        self._answer(b"431 Request Header Fields Too Large", _FRAMING_TOO_LARGE)
        self._linger()

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, without its "Invalid HTTP request" warning for a queue
        that overflowed (``_PipelineFull``), which is not one."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._pipeline_full:
                self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():  # pragma: no cover - no WebSocket routes
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_open:
            self._head_open = False
            self._answer(b"408 Request Timeout", _slow_head(self.head_seconds))
            self.transport.close()
        else:
            cycle: RequestResponseCycle | None = self.cycle  # None before the first request
            if cycle is None or cycle.response_complete:
                self.transport.close()  # no request came (nothing, or blank lines): close

    def _answer(self, status: bytes, problem: Problem) -> None:
        """Write ``problem`` as the whole response, and its access line (module docstring)."""
        request_id = new_request_id()
        self.transport.write(_response(status, problem, request_id))
        access_log.info(
            "request",
            method=None,
            route=None,
            status=problem.status,
            duration_ms=None,
            client=None,
            request_id=request_id,
            refused=problem.type.removeprefix(PROBLEM_TYPE_BASE),
        )

    def _refuse(self) -> None:
        self._answer(b"431 Request Header Fields Too Large", _TOO_LARGE)
        self._linger()

    def _linger(self) -> None:
        self._stop_head_timer()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A lingering close: closing with the client's bytes unread would send a reset, and
        # the client would lose the answer. Finish our side, read and drop what still comes
        # (up to a bound), and close when the client does or after a moment.
        self.transport.write_eof()
        self._draining = True
        self._drain_left = _DRAIN_BYTES
        self.flow.resume_reading()  # paused for a body the app did not read: drain it now
        self.loop.call_later(_DRAIN_SECONDS, self.transport.close)


def _slow_head(seconds: float) -> Problem:
    return Problem(
        "request_timeout",
        "Request timeout",
        408,
        f"Send the request line and headers whole within {seconds:g} seconds.",
    )


def _response(status: bytes, problem: Problem, request_id: str) -> bytes:
    """The whole response, as ``problem_response`` makes it for the app, with a request id of
    its own and the ``nosniff`` the request middleware adds to every answer (it never ran for
    this request)."""
    response = problem_response(problem, request_id)
    lines = [
        b"HTTP/1.1 " + status,
        *(name + b": " + value for name, value in response.raw_headers),
        b"x-request-id: " + request_id.encode("ascii"),
        b"x-content-type-options: nosniff",
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + bytes(response.body)
