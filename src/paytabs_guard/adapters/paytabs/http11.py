"""A lean HTTP/1.1 transport for the PayTabs client: asyncio sockets and httptools' C parser
under httpx's ``AsyncClient``.

Why: under load, httpcore's pool, h11 and anyio were a third of the CPU a create costs (a
py-spy profile of ``bench load``), several times what one small JSON exchange needs. This
transport does the same exchange with one asyncio protocol per connection.

What it keeps from httpx's own transport, because the resilience layer relies on it:

* the failure classes. ``ConnectError``/``ConnectTimeout``/``PoolTimeout`` only while no byte
  of the request has been written (``error_from_transport`` treats those as "never sent"); any
  later failure is a ``WriteError``, ``ReadError``, ``ReadTimeout`` or ``RemoteProtocolError``,
  which the client treats as "outcome unknown".
* the timeouts of ``httpx.Timeout``: connect, pool (waiting for a free connection) and read
  (no byte for that long; not the whole answer).
* pooled keep-alive connections per origin, at most ``max_connections`` in all, an idle one
  closed after ``keepalive_expiry`` seconds rather than reused when the server may have closed
  it; TLS with httpx's default context (certifi, ``SSL_CERT_FILE``).

The PayTabs client sends its calls straight through it (``direct_post.DirectPost``: the
request written once per path, the answer as an ``httpx.Response``, content decoding
included), and keeps httpx's client for a test's transport and for proxies. httpx mounts the
proxies named in the environment only on a client built without a transport, so where one
applies (``direct_post.proxied_by_environment``) the client is built with httpx's own
transport instead, and likewise where httptools is not installed (the library without the
service extra: ``pool_transport``); one client per event loop then (``loop_clients``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping

try:
    import httptools

    HAVE_HTTPTOOLS = True
except ImportError:  # pragma: no cover - the library without the service extra
    HAVE_HTTPTOOLS = False

#: An answer larger than this is refused (PayTabs answers are a few KiB).
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
KEEPALIVE_EXPIRY_SECONDS: Final = 5.0

Origin = tuple[str, str, int]


class Answer(NamedTuple):
    """An HTTP answer as it came off the wire (the body not decoded)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def as_response(self) -> httpx.Response:
        """As httpx hands a transport's answer on (its body decoded when it is read)."""
        return httpx.Response(
            self.status,
            headers=self.headers,
            stream=httpx.ByteStream(self.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason},
        )


class RequestHead:
    """A request's line and headers, serialised (ending in the blank line), out of sight.

    They hold the server key (``authorization``). Error trackers (Sentry) and
    ``traceback.TracebackException(..., capture_locals=True)`` record the repr of every local
    variable of every frame a failure passed through: a timeout or a refused connection under
    ``send`` shipped the key with the bytes of the head. As this object, a frame shows its
    length only; the bytes come out only inside :meth:`write_to`, which returns nothing."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __repr__(self) -> str:
        return f"<RequestHead: {len(self._data)} bytes, not shown>"

    def __add__(self, more: bytes) -> RequestHead:
        """This head with more header lines (``more`` holds no secret)."""
        return RequestHead(self._data + more)

    def write_to(self, transport: asyncio.WriteTransport, body: bytes) -> None:
        """Write the request: this head, then ``body``."""
        transport.write(self._data + body)


def pool_transport(max_connections: int) -> Http11Transport | None:
    """The lean transport where httptools is installed, else None: the client then keeps
    httpx's own transport, one per event loop (``loop_clients.ClientPerLoop``).

    ``HAVE_HTTPTOOLS`` is read here, at each call, so that a test can take the path a plain
    ``pip install paytabs-guard`` takes by setting it false."""
    if not HAVE_HTTPTOOLS:
        return None
    return Http11Transport(max_connections=max_connections)


class _Exchange(asyncio.Protocol):
    """One connection: writes requests, parses answers, one at a time."""

    def __init__(self) -> None:
        # The loop the connection lives on: its socket is registered there, so it is of no use
        # to another loop (a client used under one asyncio.run after another).
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: Any = None  # httptools.HttpResponseParser, new per answer
        self._progress: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False
        self.reusable = False  # HTTP/1.1 keep-alive, no "Connection: close", a delimited body
        self.error: httpx.TransportError | None = None
        self.delimited = False  # Content-Length or chunked: the end is known without a close

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection (uvloop's transports are not asyncio.Transport subclasses).
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(httpx.RemoteProtocolError(f"malformed answer: {error}"))
        if self.size > MAX_RESPONSE_BYTES:
            self._fail(httpx.RemoteProtocolError("answer larger than 8 MiB"))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self.complete and self.error is None:
            if self.headers_done and not self.delimited and exc is None:
                self.complete = True  # an answer delimited by the end of the connection
            elif exc is not None:
                self.error = httpx.ReadError(f"connection lost: {exc!r}")
            else:
                self.error = httpx.RemoteProtocolError("server disconnected before the answer")
        self._wake()

    # --- httptools callbacks ------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.status, self.reason, self.headers, self.headers_done = 0, b"", [], False
            return
        self.reusable = bool(self._parser.should_keep_alive())
        self.complete = True

    # --- use ----------------------------------------------------------------------------------
    def usable(self, now: float, loop: asyncio.AbstractEventLoop) -> bool:
        return (
            self.loop is loop
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < KEEPALIVE_EXPIRY_SECONDS
        )

    async def exchange(self, head: RequestHead, body: bytes, read_timeout: float | None) -> None:
        """Send one request and wait for its whole answer (raises httpx's transport errors)."""
        self._reset()
        self._parser = httptools.HttpResponseParser(self)
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise httpx.WriteError("connection closed before the request was written")
        head.write_to(transport, body)
        while self._awaiting_answer():
            self._progress = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(read_timeout):
                    await self._progress
            except TimeoutError:
                raise httpx.ReadTimeout("no answer within the read timeout") from None
            finally:
                self._progress = None
        if self.error is not None:
            raise self.error
        if not self.complete:
            raise httpx.RemoteProtocolError("server disconnected before the answer")
        self._parser = None

    def close(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is None:
            return
        if _running_loop() is self.loop:
            transport.close()
        elif not self.loop.is_closed():  # another thread's loop: close it there
            with contextlib.suppress(RuntimeError):  # it closed meanwhile
                self.loop.call_soon_threadsafe(transport.close)
        # else its loop is gone and cannot run the close; the socket closes with the transport
        # when it is collected

    def _awaiting_answer(self) -> bool:
        return not (self.complete or self.closed or self.error is not None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _wake(self) -> None:
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)


class Http11Transport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 over asyncio for ``httpx.AsyncClient(transport=...)``."""

    def __init__(self, *, max_connections: int = 100) -> None:
        if not HAVE_HTTPTOOLS:  # pragma: no cover - see pool_transport
            raise RuntimeError("Http11Transport needs httptools")
        self._max = max(1, max_connections)
        self._idle: dict[Origin, deque[_Exchange]] = {}
        # Every slot of the pool, with the loop it belongs to: a connection (in use or idle),
        # or a connection being made. A loop closed with a request still under way never gives
        # its slot back; the pool takes such slots back when it is full (_reclaim).
        self._slots: dict[object, asyncio.AbstractEventLoop] = {}
        self._waiting: deque[asyncio.Future[None]] = deque()  # requests waiting for room
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        # Per event loop that has connections here: the loop, and what closes them as it ends.
        self._loops: dict[int, tuple[asyncio.AbstractEventLoop, AsyncGenerator[None, None]]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        head, body = await _serialise(request)
        answer = await self.send(origin_of(request.url), head, body, timeouts)
        return answer.as_response()

    async def send(
        self, origin: Origin, head: RequestHead, body: bytes, timeouts: Mapping[str, float | None]
    ) -> Answer:
        """One request, serialised already (``head``: the request line and headers, ending in
        the blank line), and its whole answer. The same pool, timeouts and failure classes as
        a request through httpx's client: this is the code that serves those too."""
        connection = await self._connection(origin, timeouts)
        try:
            await connection.exchange(head, body, timeouts.get("read"))
        except BaseException:
            self._drop(connection)
            raise
        answer = Answer(
            connection.status, connection.reason, connection.headers, b"".join(connection.body)
        )
        if connection.reusable and not connection.closed and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, deque()).append(connection)
            self._wake_one()
        else:
            self._drop(connection)
        return answer

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)

    # --- the pool -----------------------------------------------------------------------------
    async def _connection(self, origin: Origin, timeouts: Mapping[str, float | None]) -> _Exchange:
        deadline = _deadline(timeouts.get("pool"))
        while True:
            if self._closed:
                raise httpx.ConnectError("the PayTabs client is closed")
            now = time.monotonic()
            loop = asyncio.get_running_loop()
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()  # the most recent: the least likely to be closed
                if connection.usable(now, loop):
                    return connection
                self._drop(connection)
            if len(self._slots) < self._max or self._close_one_idle() or self._reclaim():
                break
            await self._wait_for_room(deadline)
        making = object()
        self._slots[making] = loop
        try:
            await self._watch_loop()
            connection = await self._connect(origin, timeouts.get("connect"))
        except BaseException:
            del self._slots[making]
            self._wake_one()
            raise
        del self._slots[making]
        self._slots[connection] = loop
        return connection

    async def _wait_for_room(self, deadline: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as error:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, but leaving: the room goes to the next in line
            if isinstance(error, TimeoutError):
                raise httpx.PoolTimeout("no free connection within the pool timeout") from None
            raise

    async def _watch_loop(self) -> None:
        """Close the running loop's idle connections when it shuts down.

        A client kept across event loops (``asyncio.run`` per call) would otherwise leave each
        loop's last connection open after the loop is gone. ``asyncio.run`` and
        ``asyncio.Runner`` (uvloop's too) close every async generator still suspended before
        they close the loop: one started here on each loop is how the pool hears of it."""
        loop = asyncio.get_running_loop()
        watched = self._loops.get(id(loop))
        if watched is not None and watched[0] is loop:
            return
        for key, (other, left) in list(self._loops.items()):  # loops closed unannounced
            if other.is_closed():
                del self._loops[key]
                _finish(left)
        watch = self._until_loop_ends(loop)
        self._loops[id(loop)] = (loop, watch)
        await anext(watch)  # its first step registers it with the loop's async generators

    async def _until_loop_ends(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._loops.get(id(loop), (None,))[0] is loop:
                del self._loops[id(loop)]
            for connections in self._idle.values():
                for connection in [c for c in connections if c.loop is loop]:
                    connections.remove(connection)
                    self._drop(connection)

    def _close_one_idle(self) -> bool:
        """Room for another origin's connection: close the oldest idle one anywhere."""
        for connections in self._idle.values():
            if connections:
                self._drop(connections.popleft())
                return True
        return False

    async def _connect(self, origin: Origin, connect_timeout: float | None) -> _Exchange:
        scheme, host, port = origin
        context = self._context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, protocol = await loop.create_connection(
                    _Exchange, host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as error:  # refused, unreachable, DNS, TLS handshake (ssl.SSLError)
            raise httpx.ConnectError(f"{type(error).__name__}: {error}") from error
        return protocol

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _drop(self, connection: _Exchange) -> None:
        connection.close()
        self._slots.pop(connection, None)
        self._wake_one()

    def _reclaim(self) -> bool:
        """Take back the slots of loops that closed (with a request still under way, so they
        never gave them back themselves): whether any came free."""
        gone = [holder for holder, loop in self._slots.items() if loop.is_closed()]
        for holder in gone:
            del self._slots[holder]
            if isinstance(holder, _Exchange):
                holder.close()
        return bool(gone)

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            # A waiter left behind by a loop that closed without cancelling it: nobody awaits it
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)
                return


def _finish(watch: AsyncGenerator[None, None]) -> None:
    """Close a loop's watch after its loop closed without closing it. Left to the garbage
    collector, it would ask that loop to close it, and a closed loop raises. Its ``finally``
    awaits nothing, so one step of ``aclose()`` runs it to the end here."""
    closing = watch.aclose()
    with contextlib.suppress(StopIteration):
        closing.send(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def origin_of(url: httpx.URL) -> Origin:
    """The pool's key of a URL: scheme, host and port (the scheme's default when none)."""
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    port = url.port or (443 if scheme == "https" else 80)
    return scheme, url.host, port


async def _serialise(request: httpx.Request) -> tuple[RequestHead, bytes]:
    body = await request.aread()
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            continue  # the body is read whole and sent with its length
        if lowered == b"content-length":
            has_length = True
        lines += (name, b": ", value, b"\r\n")
    if body and not has_length:
        lines += (b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n")
    lines.append(b"\r\n")
    return RequestHead(b"".join(lines)), body
