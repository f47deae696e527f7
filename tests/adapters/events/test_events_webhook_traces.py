"""Outgoing webhooks carry their own event's trace, however many payments share a relay wave.

A webhook sink takes a wave of events at once (one HTTP request per event, several at a time),
and used to be traced like the Redis pipeline: one ``deliver N events`` span for the wave, a
trace of its own. Each request's ``traceparent`` then named that span, so a merchant's handling
of ``payment.created`` joined a trace unrelated to the create, and the create's trace had no
delivery to the webhook at all, whenever two payments' events went out together (any load).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paytabs_guard import tracing
from paytabs_guard.adapters.events import WebhookEndpoint, webhook_sinks
from paytabs_guard.adapters.sql.tables import outbox
from paytabs_guard.adapters.webhooks import standard
from paytabs_guard.entrypoints.loopback import serve_app
from testkit.clock import FakeClock
from testkit.tracing import spans_exported

from .events_support import add_event, patient_relay

pytestmark = pytest.mark.anyio

OTEL_ON = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
# The trace contexts the units of work stored with each payment's event (sampled).
STORED = {
    "pay_a": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "pay_b": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "pay_c": "00-5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13-01",
}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, as OTEL_EXPORTER_OTLP_ENDPOINT turns it on, exporting to memory."""
    with spans_exported(OTEL_ON) as exporter:
        yield exporter


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_each_webhook_of_a_wave_continues_its_own_events_trace(
    engine: AsyncEngine, http: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    secret = standard.generate_secret()
    received: dict[str, str] = {}  # payment id -> traceparent of its webhook

    async def hook(request: Request) -> Response:
        body = await request.body()
        standard.verify(request.headers, body, [secret], tolerance_seconds=300, now=time.time())
        received[request.headers["webhook-id"]] = request.headers["traceparent"]
        return Response(status_code=204)

    events = {}
    for payment_id, traceparent in STORED.items():
        event = await add_event(engine, payment_id, "payment.created")
        async with engine.begin() as conn:
            await conn.execute(
                update(outbox).where(outbox.c.seq == event.seq).values(traceparent=traceparent)
            )
        events[event.event_id] = payment_id
    app = Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
    async with serve_app(app) as base_url:
        endpoint = WebhookEndpoint("shop", f"{base_url}/hooks", (SecretStr(secret),))
        relay = patient_relay(engine, webhook_sinks([endpoint], http), clock=FakeClock())
        stats = await relay.run_once()

    assert stats.delivered == 3  # one wave: the three payments' events went out together
    finished = {f"{s.context.span_id:016x}": s for s in spans.get_finished_spans() if s.context}
    for event_id, payment_id in events.items():
        _, trace_id, parent_id, flags = received[event_id].split("-")
        assert trace_id == STORED[payment_id].split("-")[1]  # the create's trace, not a new one
        assert flags == "01"
        delivery = finished[parent_id]
        assert delivery.name == "deliver payment.created"
        assert delivery.kind is SpanKind.PRODUCER
        expected = {
            "messaging.destination.name": "webhook:shop",
            "cloudevents.event_id": event_id,
            "paytabs_guard.delivery.attempt": 1,
            tracing.PAYMENT_ID: payment_id,
        }
        attributes = dict(delivery.attributes or {})
        assert {key: attributes.get(key) for key in expected} == expected
