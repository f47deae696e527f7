"""A request's head is bounded over real HTTP (``http_head_limit.py``): megabytes of headers,
or thousands of them, get a 431 and a closed connection before the app sees anything."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from paytabs_guard.entrypoints import draining
from paytabs_guard.entrypoints.http_head_limit import (
    MAX_HEAD_BYTES,
    MAX_PIPELINED,
    BoundedHttpToolsProtocol,
)
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.observability import json_formatter

pytestmark = pytest.mark.anyio

seen: list[str] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    body = await request.body()
    seen.append(scope["path"])
    await PlainTextResponse(f"{len(body)}")(scope, receive, send)


async def _exchange(url: str, chunks: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        for chunk in chunks:
            if writer.is_closing():
                break
            writer.write(chunk)
            try:
                await writer.drain()
            except ConnectionError:
                break
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            # The server's end, not a reset: a reset could have cost us the answer.
            assert await asyncio.wait_for(reader.read(), 10) == b""
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


def _head(*lines: bytes) -> bytes:
    return b"GET /x HTTP/1.1\r\nHost: t\r\n" + b"".join(lines)


async def test_a_head_under_the_bound_is_served() -> None:
    async with serve_app(app) as url:
        big = b"X-Big: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n"
        status, _, body = await _exchange(url, [_head(big, b"Connection: close\r\n\r\n")])
        assert (status, body) == (200, b"0")


@pytest.mark.parametrize(
    "lines",
    [
        [b"X-Big: " + b"a" * (4 * MAX_HEAD_BYTES) + b"\r\n"],
        [b"X-%d: a\r\n" % n for n in range(MAX_HEAD_BYTES // 6)],
    ],
    ids=["one-huge-header", "many-headers"],
)
async def test_a_head_past_the_bound_is_431_before_the_app(lines: list[bytes]) -> None:
    seen.clear()
    async with serve_app(app) as url:
        payload = _head(*lines) + b"\r\n"
        chunks = [payload[i : i + 8192] for i in range(0, len(payload), 8192)]
        status, headers, body = await _exchange(url, chunks)
        assert status == 431
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert json.loads(body)["status"] == 431
    assert seen == []


async def test_a_large_body_does_not_count_against_the_head() -> None:
    async with serve_app(app) as url:
        body = b"b" * (8 * MAX_HEAD_BYTES)
        request = (
            b"POST /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        status, _, answer = await _exchange(url, [request])
        assert (status, answer) == (200, str(len(body)).encode())


@pytest.mark.parametrize(
    "request_bytes",
    [
        _head(b"X-Ctl: a\x01b\r\n\r\n"),
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["control-character", "bad-chunk-size", "negative-length"],
)
async def test_a_request_the_parser_refuses_is_a_400_problem_with_a_request_id(
    request_bytes: bytes,
) -> None:
    # uvicorn answered these with a plain-text 400 and no X-Request-ID.
    seen.clear()
    async with serve_app(app) as url:
        status, headers, body = await _exchange(url, [request_bytes])
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-request-id"].startswith("req_")
    problem = json.loads(body)
    assert problem["type"].endswith("/invalid-http-request")
    assert problem["request_id"] == headers["x-request-id"]  # as on every other problem
    assert seen == []  # the app never saw it


async def test_a_head_that_stops_coming_is_a_408_and_the_connection_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn stops its keep-alive timer at the first byte and has none for the rest: a
    # client sending part of a head (slowloris) held the connection forever.
    monkeypatch.setattr(BoundedHttpToolsProtocol, "head_seconds", 0.2)
    seen.clear()
    async with serve_app(app) as url:
        status, headers, body = await _exchange(url, [_head(b"X-Slow: a\r\n")])
        # A head that comes whole is not timed at all.
        whole, _, _ = await _exchange(url, [_head(b"Connection: close\r\n\r\n")])
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-request-id"].startswith("req_")
    assert json.loads(body)["status"] == 408
    assert "within 0.2 seconds" in json.loads(body)["detail"]
    assert whole == 200
    assert seen == ["/x"]  # only the whole one reached the app


@contextlib.contextmanager
def _access_lines() -> Iterator[list[dict[str, object]]]:
    """The access lines written inside, as the service's formatter renders them (the list is
    filled on the way out)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("paytabs_guard.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    lines: list[dict[str, object]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        lines.extend(json.loads(line) for line in buffer.getvalue().splitlines())


@pytest.mark.parametrize(
    ("request_bytes", "status", "refused"),
    [
        (_head(b"X-Ctl: a\x01b\r\n\r\n"), 400, "invalid-http-request"),
        (_head(b"X-Big: " + b"a" * (2 * MAX_HEAD_BYTES) + b"\r\n\r\n"), 431,
         "request-header-fields-too-large"),
        (_head(b"X-Slow: a\r\n"), 408, "request-timeout"),
    ],
    ids=["invalid", "too-large", "too-slow"],
)  # fmt: skip
async def test_a_refused_head_is_in_the_access_log_with_its_request_id(
    monkeypatch: pytest.MonkeyPatch, request_bytes: bytes, status: int, refused: str
) -> None:
    # The app never sees these requests, so its access line never listed them: an operator
    # could not find a client's malformed or oversized requests, nor match an answer's id.
    monkeypatch.setattr(BoundedHttpToolsProtocol, "head_seconds", 0.2)
    with _access_lines() as lines:
        async with serve_app(app) as url:
            got, headers, _ = await _exchange(url, [request_bytes])
    assert got == status
    # The headers the app's middleware puts on every answer, which these never pass through.
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    [line] = [line for line in lines if line["event"] == "request"]
    assert line["status"] == status
    assert line["request_id"] == headers["x-request-id"]
    assert line["refused"] == refused
    assert line["route"] is None


# -- connections that cost the worker without a request to show for it -------------------------


async def _until_closed(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded wait)."""
    received = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_a_few_pipelined_requests_are_all_answered_in_order() -> None:
    seen.clear()
    async with serve_app(app) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        paths = [f"/p{n}".encode() for n in range(5)]
        requests = [b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n" for path in paths]
        requests[-1] = requests[-1].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        writer.write(b"".join(requests))
        received = await _until_closed(reader)
        writer.close()
    assert received.count(b"HTTP/1.1 200 OK") == 5
    assert seen == [path.decode() for path in paths]


async def test_a_pipelined_flood_is_cut_at_the_queue_bound_and_the_rest_never_read() -> None:
    # uvicorn queued every pipelined request and read on after each answer: a client that
    # never read its answers had the worker keep thousands of requests (hundreds of MB from a
    # few connections). The requests already queued are answered, then the connection closes.
    seen.clear()
    async with serve_app(app) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        flood = b"GET /flood HTTP/1.1\r\nHost: t\r\n\r\n" * 20_000  # 640 KB
        writer.write(flood)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        received = await _until_closed(reader)
        writer.close()
    answered = received.count(b"HTTP/1.1 200 OK")
    assert 1 <= answered <= MAX_PIPELINED + 1  # the one running, and those queued behind it
    assert len(seen) == answered


async def test_a_connection_that_sends_nothing_or_blank_lines_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn has no timer before a connection's first request, and any byte (a blank line
    # too, which the parser skips) stops its keep-alive timer after one: thousands of idle
    # sockets held the worker's file descriptors for ever.
    monkeypatch.setattr(BoundedHttpToolsProtocol, "head_seconds", 0.2)
    seen.clear()
    async with serve_app(app) as url:
        parts = urlsplit(url)
        silent_reader, silent = await asyncio.open_connection(parts.hostname, parts.port)
        blank_reader, blank = await asyncio.open_connection(parts.hostname, parts.port)
        blank.write(b"\r\n\r\n")
        after_reader, after = await asyncio.open_connection(parts.hostname, parts.port)
        after.write(b"GET /once HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = await after_reader.readuntil(b"\r\n\r\n")
        after.write(b"\r\n")  # stops uvicorn's keep-alive timer; not ours
        assert await _until_closed(silent_reader) == b""  # no request: no answer, closed
        assert await _until_closed(blank_reader) == b""
        assert await _until_closed(after_reader) == b"0"  # the rest of the answer, then closed
        for writer in (silent, blank, after):
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert seen == ["/once"]


async def refuse_unread(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 401 at once, as the API does a request without credentials: body unread."""
    await PlainTextResponse("no", status_code=401)(scope, receive, send)


async def test_an_answer_before_the_body_ends_the_upload_instead_of_draining_it() -> None:
    # uvicorn read and dropped the rest of a refused upload for as long as the client sent:
    # one unauthenticated socket declaring 100 GB kept a core busy. Now the server finishes
    # its side, reads on for a bounded moment, and closes.
    async with serve_app(refuse_unread) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000\r\n\r\n")
        answer = asyncio.ensure_future(_until_closed(reader, within=20.0))
        sent, chunk = 0, b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while sent < 256 << 20 and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        with contextlib.suppress(ConnectionError):
            received = await answer
            assert received.startswith(b"HTTP/1.1 401")
        writer.close()
    assert sent < 64 << 20  # the server stopped reading long before the 256 MB


async def test_a_graceful_shutdown_is_told_to_the_requests_of_its_server() -> None:
    # uvicorn's shutdown tells each open connection first (protocol.shutdown), then waits for
    # the requests in flight: that is when a request that only waits must stop (draining.py).
    # Each request's scope carries its own server's event; another server's stays unset.
    events: list[asyncio.Event | None] = []

    async def record(scope: Scope, receive: Receive, send: Send) -> None:
        events.append(draining.of_request(scope))
        await PlainTextResponse("ok")(scope, receive, send)

    async def one_request(base: str) -> asyncio.StreamWriter:
        parts = urlsplit(base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(_head(b"\r\n"))
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        return writer  # the connection stays open (keep-alive)

    async with serve_app(record) as other_url:
        (await one_request(other_url)).close()
        async with serve_app(record) as url:
            kept = await one_request(url)
            other, mine = events
            assert mine is not None
            assert other is not None
            assert not mine.is_set()
        kept.close()
        assert mine.is_set()  # its server shut down with a connection open
        assert not other.is_set()  # the other one still runs


_CHUNKED_HEAD = b"POST /cb HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("opening", "filler"),
    [
        (_CHUNKED_HEAD + b"2\r\n{}\r\n0\r\n", b"X-Trailer: " + b"a" * 8180 + b"\r\n"),
        (_CHUNKED_HEAD + b"2;ext=", b"a" * 8192),
    ],
    ids=["endless-trailers", "endless-chunk-extension"],
)
async def test_a_chunked_body_framing_past_the_bound_is_431_and_never_kept(
    opening: bytes, filler: bytes
) -> None:
    # uvicorn merged trailers into the request's headers with no bound, after the head's
    # bound was checked: one callback (its body is read before any check) sent 200 MB of
    # trailers in 8 s and the worker grew to 1.5 GB. Now the framing a body brings besides
    # its bytes is bounded like a head, and the connection is refused past it.
    seen.clear()
    async with serve_app(app) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(opening)
        await writer.drain()
        answer = asyncio.ensure_future(asyncio.wait_for(reader.read(65536), 20.0))
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 16 << 20 and not answer.done():
                writer.write(filler)
                await writer.drain()
                sent += len(filler)
            if not answer.done():
                writer.write(b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")  # ends either message
        received = await answer
        writer.close()
    assert received.startswith(b"HTTP/1.1 431"), received[:200]
    assert b"trailer fields" in received
    assert sent < 16 << 20  # refused as it came (what the sockets hold aside), not at its end
    assert seen == []  # the app's request ended without a body


async def headers_seen(scope: Scope, receive: Receive, send: Send) -> None:
    body = await Request(scope, receive).body()
    names = sorted({name.decode() for name, _ in scope["headers"]})
    await PlainTextResponse(f"{len(body)} {','.join(names)}")(scope, receive, send)


async def test_trailers_are_not_merged_into_the_headers_and_small_chunks_pass() -> None:
    # A trailer after the body is no header (RFC 9110, 6.5.1): uvicorn appended it to the
    # scope's headers, so a "Content-Type" trailer made two of them, and an edge that checked
    # the headers never saw it. Many small chunks are framing, but within the bound.
    async with serve_app(headers_seen) as url:
        body = b"".join(b"1\r\nx\r\n" for _ in range(20000))
        request = _CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        status, _, answer = await _exchange(
            url, [request, body, b"0\r\nContent-Type: text/plain\r\nX-Trailer: t\r\n\r\n"]
        )
    assert status == 200
    assert answer == b"20000 connection,host,transfer-encoding"
