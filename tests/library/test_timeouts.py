"""The library's ``timeout`` over real loopback sockets: it bounds a whole attempt, not each
byte; the retry deadline bounds the operation as documented; and a connection that cannot be
made still fails as "never sent"."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from paytabs_guard import (
    AmbiguousGatewayError,
    HostedPageRequest,
    Money,
    PayTabs,
    RetryConfig,
    TransientGatewayError,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 0.2  # the facade's timeout in these tests
DRIP = 0.02  # a byte every 20 ms: well inside any per-byte read timeout used here
#: Fast retries, so that the tests measure the timeouts rather than the backoff.
QUICK = RetryConfig(retries=1, base_delay=0.001, max_delay=0.001)


@contextlib.asynccontextmanager
async def dripping() -> AsyncIterator[str]:
    """A server that reads each request, then answers one byte at a time, never finishing
    within a test: every byte comes before the next-byte read timeout."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100_000
            for index in range(len(answer)):
                writer.write(answer[index : index + 1])
                await writer.drain()
                await asyncio.sleep(DRIP)  # the server's pace (real I/O), not the test's
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.wait_closed(), 1)


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A listening port whose accept queue is full: a new connection's SYN is dropped, so
    connecting hangs (a host that does not answer), and nothing is ever sent."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def page_request() -> HostedPageRequest:
    return HostedPageRequest(
        cart_id="order-timeout",
        amount=Money.of("10.00", "SAR"),
        description="Timeout",
        return_url="https://shop.example/done",
    )


async def test_timeout_bounds_a_whole_attempt_against_a_dripping_server() -> None:
    async with (
        dripping() as url,
        PayTabs(
            profile_id=1, server_key="S-key", base_url=url, timeout=TIMEOUT, retry=QUICK
        ) as paytabs,
    ):
        started = time.monotonic()
        # Without the fix each attempt ran to the breaker's default 30 s call timeout.
        async with asyncio.timeout(10):
            with pytest.raises(AmbiguousGatewayError) as raised:
                await paytabs.query_transaction("TST0000000000001")
        elapsed = time.monotonic() - started
    assert "timed out after 0.200 s" in str(raised.value)
    # two attempts of TIMEOUT each, plus scheduling slack on a loaded machine
    assert 2 * TIMEOUT <= elapsed < 2 * TIMEOUT + 1.5


async def test_a_write_that_times_out_is_resolved_within_a_bound() -> None:
    """An unknown create is resolved by a query (itself retried): three attempts in all."""
    async with (
        dripping() as url,
        PayTabs(
            profile_id=1, server_key="S-key", base_url=url, timeout=TIMEOUT, retry=QUICK
        ) as paytabs,
    ):
        started = time.monotonic()
        async with asyncio.timeout(10):
            with pytest.raises(AmbiguousGatewayError) as raised:
                await paytabs.create_payment_page(page_request())
        elapsed = time.monotonic() - started
    assert any("resolution by query failed" in note for note in raised.value.__notes__)
    assert 3 * TIMEOUT <= elapsed < 3 * TIMEOUT + 1.5


async def test_the_deadline_stops_retries_so_an_operation_ends_by_deadline_plus_timeout() -> None:
    deadline = 0.5
    many = RetryConfig(retries=10, base_delay=0.001, max_delay=0.001, deadline=deadline)
    async with (
        dripping() as url,
        PayTabs(
            profile_id=1, server_key="S-key", base_url=url, timeout=TIMEOUT, retry=many
        ) as paytabs,
    ):
        started = time.monotonic()
        async with asyncio.timeout(10):
            with pytest.raises(AmbiguousGatewayError) as raised:
                await paytabs.query_transaction("TST0000000000001")
        elapsed = time.monotonic() - started
    assert any("deadline reached" in note for note in raised.value.__notes__)
    # no retry starts after the deadline; the last one runs to its timeout
    assert deadline <= elapsed < deadline + TIMEOUT + 1.0


async def test_a_connection_that_cannot_be_made_is_still_never_sent() -> None:
    """The HTTP connect timeout ends before the attempt's: "never sent", re-sent safely,
    rather than an unknown outcome that needs a query (the breaker cannot tell)."""
    with unanswered_port() as port:
        async with PayTabs(
            profile_id=1,
            server_key="S-key",
            base_url=f"http://127.0.0.1:{port}",
            # The connect timeout ends at 90 % of the attempt: at 0.2 s that is 20 ms before
            # the breaker's cut, which a busy machine (the suite on every core) can miss.
            timeout=2.0,
            retry=QUICK,
        ) as paytabs:
            async with asyncio.timeout(10):
                with pytest.raises(TransientGatewayError) as raised:
                    await paytabs.create_payment_page(page_request())
    assert any("retries used" in note for note in raised.value.__notes__)


def test_timeout_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout must be > 0 s"):
            PayTabs(profile_id=1, server_key="S-key", timeout=bad)


def test_the_breakers_call_timeout_is_at_most_the_timeout() -> None:
    assert PayTabs(profile_id=1, server_key="S", timeout=1.0).registry.config.call_timeout == 1.0
    assert PayTabs(profile_id=1, server_key="S").registry.config.call_timeout == 30.0


def test_the_library_region_defaults_to_saudi_arabia() -> None:
    """Documented in the README, docs/paytabs.md §2 and the docstring (the service: ARE)."""
    assert PayTabs(profile_id=1, server_key="S").client.base_url == "https://secure.paytabs.sa"
