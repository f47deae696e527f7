"""Outgoing webhooks: a real receiver verifies them (Standard Webhooks), and retries after 5xx."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paytabs_guard.adapters.events import (
    DeliveryFailed,
    OutboxEvent,
    WebhookEndpoint,
    WebhookSink,
    webhook_sinks,
)
from paytabs_guard.adapters.events.sinks import SinkUnreachable
from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.entrypoints.loopback import serve_app
from testkit.clock import FakeClock

from .events_support import add_event, patient_relay

pytestmark = pytest.mark.anyio

# The official vector: standard-webhooks libraries/python/tests/test_webhooks.py::test_sign_function
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@dataclass
class Receiver:
    """A merchant endpoint that verifies every delivery the way docs/events.md tells merchants."""

    secret: str
    statuses: list[int] = field(default_factory=list)  # answers to give first, then 204
    verified: list[tuple[str, bytes, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    async def hooks(self, request: Request) -> Response:
        body = await request.body()
        try:
            proof = standard.verify(
                request.headers, body, [self.secret], tolerance_seconds=300, now=time.time()
            )
        except standard.WebhookVerificationError as error:
            self.rejected.append(error.reason)
            return Response(status_code=401)
        self.verified.append((proof.msg_id, body, request.headers["content-type"]))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self.hooks, methods=["POST"])])


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def endpoint(url: str, *secrets: str, **options: frozenset[str]) -> WebhookEndpoint:
    return WebhookEndpoint(
        name="shop", url=url, secrets=tuple(SecretStr(s) for s in secrets), **options
    )


async def test_a_real_receiver_verifies_our_signed_webhook(
    engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    receiver = Receiver(secret=standard.generate_secret())
    event = await add_event(engine, "pay_a", "payment.completed")
    async with serve_app(receiver.app()) as base_url:
        sinks = webhook_sinks([endpoint(f"{base_url}/hooks", receiver.secret)], http)
        stats = await patient_relay(engine, sinks, clock=FakeClock()).run_once()

    assert stats.delivered == 1
    assert receiver.rejected == []
    assert receiver.verified == [
        (event.event_id, event.envelope.encode(), "application/cloudevents+json; charset=utf-8")
    ]


async def test_a_receiver_answering_500_gets_the_event_after_a_retry(
    engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    receiver = Receiver(secret=standard.generate_secret(), statuses=[500])
    event = await add_event(engine, "pay_a", "payment.completed")
    async with serve_app(receiver.app()) as base_url:
        relay = patient_relay(
            engine,
            webhook_sinks([endpoint(f"{base_url}/hooks", receiver.secret)], http),
            clock=clock,
        )
        first = await relay.run_once()
        assert (first.delivered, first.retried) == (0, 1)
        clock.advance(3600)  # past the longest first backoff
        second = await relay.run_once()

    assert second.delivered == 1
    assert [msg_id for msg_id, _, _ in receiver.verified] == [event.event_id] * 2  # same id
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    event_deliveries.c.sink,
                    event_deliveries.c.status,
                    event_deliveries.c.attempts,
                    event_deliveries.c.last_error,
                )
            )
        ).one()
    assert tuple(row) == ("webhook:shop", "delivered", 2, "DeliveryFailed: webhook:shop: HTTP 500")


def capture(status: int = 204) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    return seen, httpx.MockTransport(handle)


def vector_event() -> OutboxEvent:
    return OutboxEvent(
        seq=1, event_id=VECTOR_ID, payment_id="pay_a", type="test", envelope=VECTOR_BODY
    )


async def test_our_sender_reproduces_the_published_standard_webhooks_vector() -> None:
    seen, transport = capture()
    async with httpx.AsyncClient(transport=transport) as client:
        sink = WebhookSink(
            endpoint("https://merchant.example/hooks", VECTOR_SECRET),
            client,
            clock=lambda: datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC),
        )
        await sink.deliver(vector_event())

    [request] = seen
    assert request.headers["webhook-id"] == VECTOR_ID
    assert request.headers["webhook-timestamp"] == str(VECTOR_TIMESTAMP)
    assert request.headers["webhook-signature"] == VECTOR_SIGNATURE
    assert request.content == VECTOR_BODY.encode()
    proof = standard.verify(
        request.headers,
        request.content,
        [VECTOR_SECRET],
        tolerance_seconds=300,
        now=VECTOR_TIMESTAMP,
    )
    assert proof.msg_id == VECTOR_ID


async def test_during_a_rotation_every_secret_signs() -> None:
    old, new = standard.generate_secret(), standard.generate_secret()
    seen, transport = capture()
    async with httpx.AsyncClient(transport=transport) as client:
        sink = WebhookSink(endpoint("https://merchant.example/hooks", old, new), client)
        await sink.deliver(vector_event())

    [request] = seen
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standard.verify(
            request.headers, request.content, [secret], tolerance_seconds=300, now=time.time()
        )


@pytest.mark.parametrize("status", [301, 302, 400, 410, 429, 500, 503])
async def test_anything_but_2xx_is_a_failure(status: int) -> None:
    _, transport = capture(status)
    async with httpx.AsyncClient(transport=transport) as client:
        sink = WebhookSink(endpoint("https://merchant.example/hooks", VECTOR_SECRET), client)
        with pytest.raises(DeliveryFailed, match=f"webhook:shop: HTTP {status}") as caught:
            await sink.deliver(vector_event())
    # the endpoint answered: this event's failure, counted towards its dead letter
    assert not isinstance(caught.value, SinkUnreachable)


async def test_a_host_refusing_connections_is_the_sinks_outage_and_names_no_secret() -> None:
    # A real port with nobody listening: the endpoint's host is down, which is no fault of
    # the event (never a dead letter, sinks.SinkUnreachable).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient() as client:
        sink = WebhookSink(endpoint(f"http://127.0.0.1:{port}/hooks", VECTOR_SECRET), client)
        with pytest.raises(SinkUnreachable) as caught:
            await sink.deliver(vector_event())
    assert str(caught.value) == "webhook:shop: ConnectError"


async def test_endpoints_are_checked_when_configured(http: httpx.AsyncClient) -> None:
    with pytest.raises(standard.InvalidWebhookSecret):
        endpoint("https://merchant.example/hooks", "whsec_dG9vc2hvcnQ=")
    with pytest.raises(ValueError, match="at least one secret"):
        endpoint("https://merchant.example/hooks")
    with pytest.raises(ValueError, match="http"):
        endpoint("ftp://merchant.example/hooks", VECTOR_SECRET)
    shop = endpoint("https://user:token@merchant.example/hooks", VECTOR_SECRET)
    assert repr(shop) == "WebhookEndpoint(name='shop')"  # no URL (it may hold a token)
    with pytest.raises(ValueError, match="unique: shop"):
        webhook_sinks([shop, shop], http)


async def test_an_endpoint_can_take_only_some_event_types(http: httpx.AsyncClient) -> None:
    only = endpoint(
        "https://merchant.example/hooks",
        VECTOR_SECRET,
        event_types=frozenset({"payment.completed"}),
    )
    sink = WebhookSink(only, http)
    assert sink.name == "webhook:shop"
    assert sink.accepts("payment.completed")
    assert not sink.accepts("payment.created")
    every = WebhookSink(endpoint("https://merchant.example/", VECTOR_SECRET), http)
    assert every.accepts("payment.created")


async def test_an_endpoint_hanging_on_one_payment_still_gets_the_others(
    engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    """One wave of the relay holds one event per payment; sent one after the other, an
    endpoint that hung on the first held the others for its whole timeout."""
    receiver = Receiver(secret=standard.generate_secret())
    release = asyncio.Event()
    verify = receiver.hooks

    async def hangs_on_one(request: Request) -> Response:
        if b"pay_slow" in await request.body():
            await release.wait()
        return await verify(request)

    slow = await add_event(engine, "pay_slow", "payment.created")
    others = [await add_event(engine, f"pay_{n}", "payment.created") for n in range(3)]
    app = Starlette(routes=[Route("/hooks", hangs_on_one, methods=["POST"])])
    async with serve_app(app) as base_url:
        relay = patient_relay(
            engine,
            webhook_sinks([endpoint(f"{base_url}/hooks", receiver.secret)], http),
            clock=FakeClock(),
            drain_wait_seconds=5.0,
        )
        running = asyncio.create_task(relay.run_once())
        async with asyncio.timeout(5):
            while len(receiver.verified) < len(others):  # noqa: ASYNC110 - a real server
                await asyncio.sleep(0.01)
        assert not running.done()  # the slow one still hangs...
        assert {msg_id for msg_id, _, _ in receiver.verified} == {e.event_id for e in others}
        release.set()  # ...and goes through once the endpoint answers
        assert (await running).delivered == len(others) + 1
    assert receiver.verified[-1][0] == slow.event_id


async def test_an_endpoint_answering_a_byte_at_a_time_is_cut_at_the_timeout() -> None:
    """The timeout bounds the whole request, not each read: an endpoint that dribbles its
    answer's headers (a byte well within the timeout, forever) held a delivery, its relay
    drain and its lease without end, and the event went out again once the lease ran out."""
    dribbling = asyncio.Event()

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        dribbling.set()
        try:
            while True:  # the peer's pace, not a wait of the test's: it never finishes
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.02)
        except (ConnectionError, OSError):
            pass  # the sender gave up, as it must
        finally:
            writer.close()

    server = await asyncio.start_server(dribble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            sink = WebhookSink(
                endpoint(f"http://127.0.0.1:{port}/hooks", VECTOR_SECRET),
                client,
                timeout_seconds=0.3,
            )
            async with asyncio.timeout(10):  # without the bound: held until this gives up
                with pytest.raises(DeliveryFailed) as caught:
                    await sink.deliver(vector_event())
    finally:
        server.close()
        await server.wait_closed()
    assert dribbling.is_set()
    assert str(caught.value) == "webhook:shop: no answer within 0.3 s"
    # The endpoint took the request: this event's failure, not the sink's outage.
    assert not isinstance(caught.value, SinkUnreachable)


async def test_an_endpoint_that_never_finishes_connecting_is_an_outage() -> None:
    """A host that takes the TCP connection but never answers the TLS handshake is never
    reached: httpx's connect timeout, the endpoint's outage (no attempt counted), not this
    event's failure; and the socket is closed (no ResourceWarning)."""
    silent: list[asyncio.StreamWriter] = []

    async def never_answers(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # holds the connection open and says nothing

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            sink = WebhookSink(
                endpoint(f"https://127.0.0.1:{port}/hooks", VECTOR_SECRET),
                client,
                timeout_seconds=0.3,
            )
            async with asyncio.timeout(10):
                with pytest.raises(SinkUnreachable) as caught:
                    await sink.deliver(vector_event())
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
    assert silent  # the connection was taken: only the handshake never came
    assert str(caught.value) == "webhook:shop: ConnectTimeout"
