"""The body limit: refused by Content-Length before reading, or while streaming a chunked body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paytabs_guard.entrypoints.api.body_limit import (
    BodyTooLarge,
    BodyTooSlow,
    InvalidContentLength,
    declared_length,
    read_body_limited,
    read_limited,
)
from paytabs_guard.entrypoints.api.problems import (
    invalid_content_length,
    payload_too_large,
    problem_response,
)
from paytabs_guard.entrypoints.loopback import serve_app

pytestmark = pytest.mark.anyio

LIMIT = 1024


class Receiver:
    """A Starlette app whose endpoint reads with the limit and records what it pulled."""

    def __init__(self) -> None:
        self.pulled: list[int] = []  # sizes of the chunks the endpoint took from the server
        self.app = Starlette(
            routes=[
                Route("/webhook", self.plain, methods=["POST"]),
                Route("/counted", self.counted, methods=["POST"]),
            ]
        )

    async def plain(self, request: Request) -> Response:
        try:
            body = await read_body_limited(request, LIMIT)
        except BodyTooLarge as error:
            return problem_response(payload_too_large(error.limit))
        except InvalidContentLength:
            return problem_response(invalid_content_length())
        return Response(str(len(body)))

    async def counted(self, request: Request) -> Response:
        async def counting() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                self.pulled.append(len(chunk))
                yield chunk

        try:
            declared_length(request.headers.getlist("content-length"), LIMIT)
            body = await read_limited(counting(), LIMIT)
        except BodyTooLarge as error:
            return problem_response(payload_too_large(error.limit))
        return Response(str(len(body)))


class Sender:
    """A request body produced chunk by chunk, counting how far the receiver pulled it."""

    def __init__(self, chunks: int, size: int) -> None:
        self.chunks = chunks
        self.size = size
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += 1
            yield b"x" * self.size


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# --- with Content-Length --------------------------------------------------------------------


async def test_a_body_at_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhook", content=b"x" * LIMIT)
    assert (response.status_code, response.text) == (200, str(LIMIT))


async def test_an_empty_body_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhook", content=b"")
    assert (response.status_code, response.text) == (200, "0")


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: httpx.AsyncClient,
) -> None:
    sender = Sender(chunks=8, size=256)
    response = await client.post(
        "/webhook", content=sender, headers={"Content-Length": str(LIMIT + 1)}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["max_bytes"] == LIMIT
    assert sender.sent == 0  # not one chunk was pulled


@pytest.mark.parametrize(
    "value", [b"abc", b"-1", b"+5", b"1 0", b"0x10", b"", b"1e3", "\u0665".encode()]
)
async def test_a_malformed_content_length_is_a_bad_request(
    client: httpx.AsyncClient, value: bytes
) -> None:
    response = await client.post("/webhook", content=b"", headers={b"Content-Length": value})
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-content-length")


# --- chunked, no Content-Length -------------------------------------------------------------


async def test_a_chunked_body_within_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhook", content=Sender(chunks=4, size=256))
    assert (response.status_code, response.text) == (200, str(LIMIT))


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    sender = Sender(chunks=1000, size=256)
    response = await client.post("/counted", content=sender)
    assert response.status_code == 413
    # Four chunks fill the limit exactly; the fifth passes it and nothing more is pulled.
    assert receiver.pulled == [256] * 5
    assert sender.sent == 5


async def test_one_byte_over_in_the_last_chunk_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhook", content=Sender(chunks=1, size=LIMIT + 1))
    assert response.status_code == 413


# --- over a real socket ---------------------------------------------------------------------


async def test_a_chunked_upload_over_loopback_uvicorn(receiver: Receiver) -> None:
    async with serve_app(receiver.app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        small = await http.post("/webhook", content=Sender(chunks=2, size=100))
        assert (small.status_code, small.text) == (200, "200")

        sender = Sender(chunks=64, size=4096)  # 256 KiB, no Content-Length
        request = http.build_request("POST", "/counted", content=sender)
        assert request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in request.headers
        response = await http.send(request)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    # The endpoint stopped with the chunk that crossed the limit: at most limit + one chunk.
    assert sum(receiver.pulled[:-1]) <= LIMIT < sum(receiver.pulled)


# --- the pieces on their own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], None), (["0"], 0), (["1024"], 1024), (["5", "5"], 5), (["5, 5"], 5), ([" 7\t"], 7)],
)
async def test_declared_length_accepts(values: list[str], expected: int | None) -> None:
    assert declared_length(values, LIMIT) == expected


@pytest.mark.parametrize(
    "values", [["5", "6"], ["5, 6"], ["5,"], ["1" * 20], ["\u0661"], ["5 5"], ["-0"]]
)
async def test_declared_length_refuses(values: list[str]) -> None:
    with pytest.raises(InvalidContentLength):
        declared_length(values, LIMIT)


async def test_read_limited_stops_without_pulling_more() -> None:
    sender = Sender(chunks=10, size=600)
    with pytest.raises(BodyTooLarge) as caught:
        await read_limited(sender, LIMIT)
    assert sender.sent == 2
    assert caught.value.limit == LIMIT
    assert caught.value.declared is None


async def test_a_negative_limit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="limit"):
        declared_length([], -1)


async def test_a_body_that_stops_coming_is_given_up_after_its_deadline() -> None:
    stalled = asyncio.Event()  # never set: the client sent a few bytes and stopped

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"amount"'
        await stalled.wait()
        yield b"never"

    with pytest.raises(BodyTooSlow) as raised:
        await read_limited(trickle(), LIMIT, within=0.01)
    assert raised.value.seconds == 0.01


async def test_a_body_that_comes_in_time_is_read_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd"):
            yield part

    assert await read_limited(chunks(), LIMIT, within=5.0) == b"abcd"
