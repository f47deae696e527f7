"""The PayTabs client's own HTTP/1.1 transport over real loopback sockets: keep-alive, the ways
an answer can end, the pool's limit, TLS, and which failure says "never sent"."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvloop

from paytabs_guard.adapters.paytabs.http11 import MAX_RESPONSE_BYTES, Http11Transport
from testkit.threaded import entered_in_thread

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the service runs on uvloop where it is installed."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
"""Answers one request on a connection (its number); False closes the connection."""

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok": "1"}'


@dataclass
class Server:
    reply: Reply
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    ended: int = 0  # connections the client closed or dropped
    _ends: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                self.received.set()
                with self._ends:
                    self._ends.notify_all()
                if not await self.reply(reader, writer, number):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with self._ends:
                self.ended += 1
                self._ends.notify_all()

    def wait_requests(self, count: int) -> bool:
        """From another thread: whether ``count`` requests arrive within 5 s."""
        with self._ends:
            return self._ends.wait_for(lambda: len(self.requests) >= count, 5.0)

    def wait_ended(self, count: int) -> bool:
        """From another thread: whether ``count`` connections end within 5 s."""
        with self._ends:
            return self._ends.wait_for(lambda: self.ended >= count, 5.0)


@contextlib.asynccontextmanager
async def serving(reply: Reply, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(reply)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.wait_closed(), 1)


def answer(raw: bytes, keep: bool = True) -> Reply:
    async def reply(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return reply


async def post(client: httpx.AsyncClient, url: str, body: bytes = b'{"a": 1}') -> httpx.Response:
    return await client.post(url + "/payment/query", content=body)


def client(transport: httpx.AsyncBaseTransport, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(5.0, **timeouts), trust_env=False
    )


async def test_requests_reuse_a_kept_alive_connection() -> None:
    async with serving(answer(OK)) as server, client(Http11Transport()) as http:
        first = await post(http, server.url, b'{"first": true}')
        second = await post(http, server.url)
    assert (first.status_code, first.json(), second.json()) == (200, {"ok": "1"}, {"ok": "1"})
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /payment/query HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"first": true}')
    assert b"\r\ncontent-length: 15\r\n" in server.requests[0].lower()


def test_one_transport_serves_one_event_loop_after_another() -> None:
    """A client kept in a module and used under one ``asyncio.run`` after another (a sync web
    framework calling async code): a connection kept alive by a closed loop is never reused,
    where it failed every other call with "Event loop is closed"; each loop gets its own, and
    closes it as the loop ends instead of leaving it open."""
    transport = Http11Transport()
    loops: list[Callable[[], asyncio.AbstractEventLoop]] = [
        asyncio.new_event_loop,
        uvloop.new_event_loop,
    ] * 2
    with entered_in_thread(lambda: serving(answer(OK))) as server:

        async def two_posts() -> list[int]:
            http = client(transport)  # not closed: closing it would close the shared transport
            return [(await post(http, server.url)).status_code for _ in range(2)]

        statuses = []
        for new_loop in loops:
            with asyncio.Runner(loop_factory=new_loop) as run:
                statuses += run.run(two_posts())
            assert server.wait_ended(server.connections)  # closed with its loop
    assert statuses == [200] * 8
    assert server.connections == 4  # one per loop, kept alive within it


# A loop closed under a running request leaves its socket to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_loop_closed_with_its_request_under_way_gives_its_slot_back() -> None:
    """A loop closed without cancelling its tasks (run_until_complete, then close) never
    returns the connection its request holds: the pool takes the slot back when it needs it,
    where every later call failed with a pool timeout once the slots were gone."""

    async def hold_the_first(_: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 1:
            await asyncio.Event().wait()  # the first connection never gets its answer
        writer.write(OK)
        await writer.drain()
        return True

    transport = Http11Transport(max_connections=1)
    with entered_in_thread(lambda: serving(hold_the_first)) as server:
        abandoned = asyncio.new_event_loop()
        left: list[asyncio.Task[httpx.Response]] = []

        async def start_and_leave() -> None:
            left.append(asyncio.create_task(post(client(transport), server.url)))
            await asyncio.get_running_loop().run_in_executor(None, server.wait_requests, 1)

        abandoned.run_until_complete(start_and_leave())
        abandoned.close()  # the request's task is still pending: nothing gave the slot back

        async def next_call() -> int:
            return (await post(client(transport, pool=2.0), server.url)).status_code

        assert asyncio.run(next_call()) == 200
        # What the closed loop left is collected here, under this test's warning filters.
        left.clear()
        del abandoned
        gc.collect()


async def test_connection_close_is_obeyed() -> None:
    closing = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    async with serving(answer(closing, keep=True)) as server, client(Http11Transport()) as http:
        await post(http, server.url)
        await post(http, server.url)
    assert server.connections == 2


async def test_chunked_gzipped_and_close_delimited_answers_are_read_whole() -> None:
    body = gzip.compress(b'{"tran_ref": "TST1"}')
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
        + f"{len(body[:7]):x}\r\n".encode() + body[:7] + b"\r\n"
        + f"{len(body[7:]):x}\r\n".encode() + body[7:] + b"\r\n0\r\n\r\n"
    )  # fmt: skip
    until_close = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"until": "close"}'
    async with serving(answer(chunked)) as one, client(Http11Transport()) as http:
        assert (await post(http, one.url)).json() == {"tran_ref": "TST1"}
    async with serving(answer(until_close, keep=False)) as two, client(Http11Transport()) as http:
        assert (await post(http, two.url)).json() == {"until": "close"}
        assert (await post(http, two.url)).json() == {"until": "close"}
    assert two.connections == 2  # an answer ended by a close leaves nothing to reuse


async def test_an_interim_answer_is_skipped_and_http_1_0_is_not_kept_alive() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    old = OK.replace(b"HTTP/1.1", b"HTTP/1.0")
    async with (
        serving(answer(interim)) as one,
        serving(answer(old)) as two,
        client(Http11Transport()) as http,
    ):
        assert (await post(http, one.url)).json() == {"ok": "1"}
        assert (await post(http, one.url)).status_code == 200
        await post(http, two.url)
        await post(http, two.url)
    assert (one.connections, two.connections) == (1, 2)


async def test_a_connection_cut_before_the_answer_is_an_unknown_outcome() -> None:
    half = b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"tran'
    async with (
        serving(answer(b"", keep=False)) as silent,
        serving(answer(half, keep=False)) as cut,
        client(Http11Transport()) as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await post(http, silent.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await post(http, cut.url)
    # both servers had the request: it may have taken effect, so these are "outcome unknown"
    assert len(silent.requests) == len(cut.requests) == 1


async def test_garbage_and_oversized_answers_are_protocol_errors() -> None:
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_RESPONSE_BYTES + 10)
    huge += b"x" * (MAX_RESPONSE_BYTES + 10)
    async with (
        serving(answer(b"SMTP ready\r\n\r\n")) as junk,
        serving(answer(huge)) as big,
        client(Http11Transport()) as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await post(http, junk.url)
        with pytest.raises(httpx.RemoteProtocolError, match="larger"):
            await post(http, big.url)


async def test_no_answer_within_the_read_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, _: asyncio.StreamWriter, __: int) -> bool:
        await reader.read()  # until the client gives up and closes
        return False

    async with serving(hang) as server, client(Http11Transport(), read=0.05) as http:
        with pytest.raises(httpx.ReadTimeout):
            await post(http, server.url)


async def test_the_pool_limit_queues_requests_and_times_them_out_as_never_sent() -> None:
    release = asyncio.Event()

    async def slow(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        await release.wait()
        writer.write(OK)
        await writer.drain()
        return True

    transport = Http11Transport(max_connections=1)
    async with serving(slow) as server, client(transport, pool=0.05) as http:
        first = asyncio.create_task(post(http, server.url))
        await server.received.wait()
        with pytest.raises(httpx.PoolTimeout):
            await post(http, server.url)
        waiting = asyncio.create_task(http.post(server.url, content=b"{}", timeout=5.0))
        release.set()
        assert (await first).status_code == 200
        assert (await waiting).status_code == 200
    assert server.connections == 1  # the queued request went on the freed connection
    # the timed-out one never reached the server: PoolTimeout is "never sent" (errors.py)
    assert len(server.requests) == 2


async def test_a_cancelled_request_gives_its_connection_up() -> None:
    async def first_hangs(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> bool:
        if n == 1:
            await reader.read()
            return False
        writer.write(OK)
        await writer.drain()
        return True

    transport = Http11Transport(max_connections=1)
    async with serving(first_hangs) as server, client(transport, pool=1.0) as http:
        task = asyncio.create_task(post(http, server.url))
        await server.received.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await post(http, server.url)).status_code == 200
    assert server.connections == 2  # the half-used connection was not handed on


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
               "-keyout", str(key), "-out", str(cert)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - fixed command
    return cert, key


async def test_tls_is_verified_and_an_untrusted_server_is_never_sent_to(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    async with serving(answer(OK), tls) as server:
        url = f"https://127.0.0.1:{server.port}"
        async with client(Http11Transport()) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(http, url)
        assert server.requests == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust our own certificate
        async with client(Http11Transport()) as http:
            assert (await post(http, url)).json() == {"ok": "1"}
            assert (await post(http, url)).json() == {"ok": "1"}
    # the refused handshake never reached the server's handler; the trusted pair shared one
    assert (server.connections, len(server.requests)) == (1, 2)
