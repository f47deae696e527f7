"""The PayTabs client straight through its transport (``direct_post.DirectPost``), over real
loopback sockets: what reaches the server, what comes back, which failure says "never sent",
and that a proxy from the environment still gets every request (through httpx's client)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket

import pytest
from pydantic import SecretStr

from paytabs_guard.adapters.paytabs.client import PayTabsClient
from paytabs_guard.adapters.paytabs.errors import AmbiguousGatewayError, TransientGatewayError

from .test_http11 import answer, serving

pytestmark = pytest.mark.anyio

DELETED = b'{"code": 0, "message": "Token deleted"}'


def ok(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def paytabs(base_url: str) -> PayTabsClient:
    return PayTabsClient(
        profile_id=987654, server_key=SecretStr("S-KEY"), base_url=base_url, timeout_seconds=5
    )


def headers_of(request: bytes) -> dict[str, str]:
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")[1:]
    return {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}


async def test_requests_go_out_whole_on_one_kept_alive_connection() -> None:
    async with serving(answer(ok(DELETED))) as server, paytabs(server.url + "/gateway/") as client:
        await client.delete_token("TOKEN-1")
        await client.delete_token("TOKEN-2")
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /gateway/payment/token/delete HTTP/1.1\r\n")
    headers = headers_of(first)
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["authorization"] == "S-KEY"  # the raw server key, no scheme
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == "paytabs-guard"
    body = first.split(b"\r\n\r\n", 1)[1]
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {"profile_id": 987654, "token": "TOKEN-1"}
    # Sent by the client's direct route, which asks for no compressed answers (httpx's
    # client always sends Accept-Encoding).
    assert "accept-encoding" not in headers
    assert json.loads(server.requests[1].split(b"\r\n\r\n", 1)[1])["token"] == "TOKEN-2"


async def test_a_compressed_answer_is_decoded() -> None:
    zipped = gzip.compress(DELETED)
    async with (
        serving(answer(ok(zipped, b"Content-Encoding: gzip"))) as server,
        paytabs(server.url) as client,
    ):
        await client.delete_token("TOKEN-1")  # raises if the answer is not read as JSON


async def test_an_error_answer_keeps_its_class_and_retry_after() -> None:
    busy = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"
    async with serving(answer(busy)) as server, paytabs(server.url) as client:
        with pytest.raises(TransientGatewayError) as caught:
            await client.delete_token("TOKEN-1")
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 7


async def test_a_refused_connection_is_never_sent_and_a_cut_one_is_unknown() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nobody listens once it is closed
    async with paytabs(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(TransientGatewayError) as refused:
            await client.delete_token("TOKEN-1")
    assert refused.value.retry_safe  # provably never reached the server

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.close()  # the request was read, no answer
        return False

    async with serving(hang_up) as server, paytabs(server.url) as client:
        with pytest.raises(AmbiguousGatewayError) as cut:
            await client.delete_token("TOKEN-1")
    assert not cut.value.retry_safe
    assert cut.value.needs_resolution
    assert len(server.requests) == 1


async def test_a_proxy_from_the_environment_still_carries_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with serving(answer(ok(DELETED))) as proxy, serving(answer(ok(DELETED))) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        async with paytabs("http://secure.paytabs.invalid") as client:
            await client.delete_token("TOKEN-1")
        # The proxy got it, in the absolute form a proxy is sent.
        assert proxy.requests[0].startswith(
            b"POST http://secure.paytabs.invalid/payment/token/delete HTTP/1.1\r\n"
        )
        # NO_PROXY names a host that is reached directly.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        async with paytabs(server.url) as client:
            await client.delete_token("TOKEN-2")
    assert len(proxy.requests) == 1
    assert server.requests[0].startswith(b"POST /payment/token/delete HTTP/1.1\r\n")


def test_a_server_key_with_a_line_break_is_refused_without_showing_it() -> None:
    # Written into the request head as it is, a line break would add headers of its own.
    with pytest.raises(ValueError, match="server key holds a space, a line break") as caught:
        PayTabsClient(
            profile_id=1, server_key=SecretStr("S-KEY\r\nX-Evil: 1"), base_url="http://x.invalid"
        )
    assert "S-KEY" not in str(caught.value)
