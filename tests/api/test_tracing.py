"""OpenTelemetry traces over real HTTP: the service, the simulator, a merchant webhook endpoint,
and the SDK's in-memory exporter in place of OTLP (tracing itself is switched on the way an
operator does it, by the standard OTEL_* variables)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paytabs_guard import tracing
from paytabs_guard.adapters.events.outgoing_webhooks import endpoint_name
from paytabs_guard.adapters.sql.tables import outbox
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator
from testkit.tracing import spans_exported

from .api_support import API_KEY, SERVER_KEY, VISA, Service, running_service
from .relay_support import drained

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(b"tracing-test-secret-32-bytes-ok!").decode()
OTEL_ON = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "shop"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, as OTEL_EXPORTER_OTLP_ENDPOINT turns it on, exporting to memory."""
    with spans_exported(OTEL_ON) as exporter:
        yield exporter


@dataclass
class Merchant:
    """A webhook endpoint that keeps the headers of every delivery."""

    url: str = ""
    deliveries: list[httpx.Headers] = field(default_factory=list)


@contextlib.asynccontextmanager
async def traced_service(
    sim: RunningSimulator, database_url: str
) -> AsyncIterator[tuple[Service, Merchant]]:
    merchant = Merchant()

    async def hook(request: Request) -> Response:
        merchant.deliveries.append(httpx.Headers(request.headers.raw))
        return Response(status_code=204)

    async with serve_app(Starlette(routes=[Route("/hooks", hook, methods=["POST"])])) as url:
        merchant.url = f"{url}/hooks"
        env = {"EVENTS_WEBHOOK_URLS": merchant.url, "EVENTS_WEBHOOK_SECRET": SECRET}
        async with running_service(sim, database_url, env=env) as service:
            yield service, merchant


def named(finished: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def span_id(span: ReadableSpan) -> str:
    """The span id as W3C writes it (16 hex digits)."""
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def ancestors(span: ReadableSpan, finished: Sequence[ReadableSpan]) -> list[str]:
    """The names of ``span``'s parents, nearest first (within what was exported)."""
    by_id = {s.context.span_id: s for s in finished if s.context is not None}
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        found = by_id[parent.span_id]
        names.append(found.name)
        parent = found.parent
    return names


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def picked(span: ReadableSpan, expected: dict[str, Any]) -> dict[str, Any]:
    """The span's values of the attributes named in ``expected`` (to compare with it)."""
    return {key: attributes(span).get(key) for key in expected}


async def test_a_create_is_one_trace_of_request_paytabs_attempt_and_units_of_work(
    sim: RunningSimulator, database_url: str, spans: InMemorySpanExporter
) -> None:
    async with traced_service(sim, database_url) as (service, _merchant):
        payment = await service.create()
    finished = spans.get_finished_spans()
    (request,) = named(finished, "POST /payments/v2/create")
    assert request.kind is SpanKind.SERVER
    assert request.resource.attributes["service.name"] == "shop"
    expected = {
        "http.route": "/payments/v2/create",
        "http.response.status_code": 201,
        tracing.PAYMENT_ID: payment["id"],
    }
    assert picked(request, expected) == expected
    (attempt,) = named(finished, "PayTabs create_payment_page")
    assert attempt.kind is SpanKind.CLIENT
    expected = {
        "paytabs.operation": "create_payment_page",
        "paytabs.attempt": 1,
        "paytabs.retry": 0,
        "paytabs.breaker.name": "create",
        "paytabs.breaker.state": "closed",
        "paytabs.outcome": "ok",
        "http.response.status_code": 200,
        tracing.PAYMENT_ID: payment["id"],
    }
    assert picked(attempt, expected) == expected
    units = named(finished, "db unit of work")
    mine = [u for u in units if attributes(u).get(tracing.PAYMENT_ID) == payment["id"]]
    assert len(mine) >= 2  # the payment written, then PayTabs' answer recorded
    for span in [attempt, *mine]:
        assert trace_of(span) == trace_of(request)
        assert ancestors(span, finished)[-1] == "POST /payments/v2/create"
    assert {attributes(u)["db.system.name"] for u in mine} <= {"sqlite", "postgresql"}


async def test_a_replayed_create_is_traced_with_its_payment(
    sim: RunningSimulator, database_url: str, spans: InMemorySpanExporter
) -> None:
    # A merchant retrying a create with its key gets the stored answer: searching the tracing
    # backend by payment id must find that request too, not only the first one.
    async with traced_service(sim, database_url) as (service, _merchant):
        body = {"amount": "10.00", "currency": "SAR", "description": "Order 1001"}
        headers = {"Idempotency-Key": "replayed-create-0001"}
        first = await service.api.post("/payments/v2/create", json=body, headers=headers)
        again = await service.api.post("/payments/v2/create", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    requests = named(spans.get_finished_spans(), "POST /payments/v2/create")
    assert len(requests) == 2
    assert [attributes(r).get(tracing.PAYMENT_ID) for r in requests] == [first.json()["id"]] * 2
    # The replay's unit of work ended on the taken key: a decision, not a failed database call,
    # so nothing here is an error a tail sampler keeping errors would keep.
    finished = spans.get_finished_spans()
    ended_by = {attributes(u).get("db.rolled_back_by") for u in named(finished, "db unit of work")}
    assert "KeyTaken" in ended_by, ended_by
    assert all(span.status.status_code is not StatusCode.ERROR for span in finished)


async def test_a_refusal_inside_a_unit_of_work_is_no_error_span(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    async with traced_service(sim, sqlite_url) as (service, _merchant):
        payment = await service.create()  # awaiting the customer: nothing to refund
        refused = await service.follow_up(payment["id"], "refund", "1.00")
    assert refused.status_code == 409, refused.text
    finished = spans.get_finished_spans()
    assert all(span.status.status_code is not StatusCode.ERROR for span in finished)


async def test_a_retried_call_shows_each_attempt_with_its_number(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    # Every create refused before it is processed (retry-safe): the retry policy tries twice.
    sim.engine.set_faults(
        Faults(error_rate=1.0, error_statuses=[503], fault_paths=["/payment/request"])
    )
    async with traced_service(sim, sqlite_url) as (service, _merchant):
        response = await service.api.post(
            "/payments/v2/create",
            json={"amount": "10.00", "currency": "SAR", "description": "Retried"},
            headers={"Idempotency-Key": "key_tracing_retry"},
        )
    assert response.status_code == 503, response.text
    finished = spans.get_finished_spans()
    attempts = sorted(
        named(finished, "PayTabs create_payment_page"),
        key=lambda span: attributes(span)["paytabs.attempt"],
    )
    assert [attributes(a)["paytabs.attempt"] for a in attempts] == [1, 2]
    assert [attributes(a)["paytabs.retry"] for a in attempts] == [0, 1]
    for attempt in attempts:
        assert attributes(attempt)["http.response.status_code"] == 503
        assert attributes(attempt)["paytabs.outcome"] != "ok"
        assert not attempt.status.is_ok
    (request,) = named(finished, "POST /payments/v2/create")
    assert {trace_of(a) for a in attempts} == {trace_of(request)}


async def test_a_paytabs_callback_is_traced_with_its_payment_and_outcome(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    async with traced_service(sim, sqlite_url) as (service, _merchant):
        payment = await service.create()
        await service.pay(payment, VISA)
        await service.callbacks_done()
    finished = spans.get_finished_spans()
    (callback,) = named(finished, "PayTabs callback")
    expected = {
        "paytabs_guard.callback.outcome": "processed",
        "paytabs.tran_ref": payment["tran_ref"],
        "paytabs.response_status": "A",
        tracing.PAYMENT_ID: payment["id"],
    }
    assert picked(callback, expected) == expected
    assert ancestors(callback, finished) == ["POST /payments/v2/webhook"]
    (request,) = named(finished, "POST /payments/v2/webhook")
    assert attributes(request)[tracing.PAYMENT_ID] == payment["id"]
    # Nothing secret anywhere: keys, API keys, card numbers.
    for span in finished:
        for value in attributes(span).values():
            text = str(value)
            assert SERVER_KEY not in text
            assert API_KEY not in text
            assert VISA not in text


async def test_an_outgoing_webhook_continues_the_trace_of_the_create(
    sim: RunningSimulator, database_url: str, spans: InMemorySpanExporter
) -> None:
    async with traced_service(sim, database_url) as (service, merchant):
        payment = await service.create()
        await drained(service)
        async with service.container.engine.connect() as connection:
            stored = (
                (
                    await connection.execute(
                        select(outbox.c.traceparent).where(outbox.c.payment_id == payment["id"])
                    )
                )
                .scalars()
                .all()
            )
    assert stored
    assert all(value and value.startswith("00-") for value in stored)
    finished = spans.get_finished_spans()
    (request,) = named(finished, "POST /payments/v2/create")
    create_trace = f"{trace_of(request):032x}"
    assert merchant.deliveries
    for headers in merchant.deliveries:
        version, trace_id, parent_id, flags = headers["traceparent"].split("-")
        assert (version, trace_id) == ("00", create_trace)
        assert int(flags, 16) & 1  # sampled
        (delivery,) = [s for s in finished if span_id(s) == parent_id]
        assert delivery.name.startswith("deliver payment.")
        assert delivery.kind is SpanKind.PRODUCER
        expected = {
            "messaging.destination.name": "webhook:" + endpoint_name(merchant.url),
            "paytabs_guard.delivery.attempt": 1,
            tracing.PAYMENT_ID: payment["id"],
        }
        assert picked(delivery, expected) == expected
        assert "db unit of work" in ancestors(delivery, finished)


async def test_stored_trace_context_is_passed_on_by_a_relay_that_does_not_trace(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    async with traced_service(sim, sqlite_url) as (service, merchant):
        await service.create()
        tracing.shutdown()  # e.g. another instance, without the variables, runs the relay
        await drained(service)
    finished = spans.get_finished_spans()
    (request,) = named(finished, "POST /payments/v2/create")
    units = {span_id(s) for s in named(finished, "db unit of work")}
    assert merchant.deliveries
    for headers in merchant.deliveries:
        _, trace_id, parent_id, _ = headers["traceparent"].split("-")
        assert trace_id == f"{trace_of(request):032x}"
        assert parent_id in units  # the unit of work that wrote the event


async def test_nothing_is_traced_or_stored_when_the_variables_are_unset(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    exporter = InMemorySpanExporter()
    assert not tracing.configure({}, exporter=exporter)
    assert not tracing.ENABLED
    assert tracing.span("anything", "server") is tracing.NO_SPAN
    async with traced_service(sim, sqlite_url) as (service, merchant):
        payment = await service.create()
        await service.pay(payment, VISA)
        await service.callbacks_done()
        await drained(service)
        async with service.container.engine.connect() as connection:
            stored = (await connection.execute(select(outbox.c.traceparent))).scalars().all()
    assert stored
    assert set(stored) == {None}
    assert merchant.deliveries
    assert all("traceparent" not in headers for headers in merchant.deliveries)
    assert exporter.get_finished_spans() == ()


async def test_a_card_number_in_the_path_is_not_exported_in_url_path(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    # A merchant that keys its customers by card number (refused: 422) or pastes one where a
    # payment id goes (404) must not find the number in the tracing backend: the logs and
    # the problem hide it, and docs/observability.md promises "no card data" in a span.
    paths = [
        f"/payments/v2/customers/{VISA}/cards",
        f"/payments/v2/{VISA}",
        "/payments/v2/customers/4111-1111-1111-1111/cards",
    ]
    async with traced_service(sim, sqlite_url) as (service, _merchant):
        answers = [await service.api.get(path) for path in paths]
    assert [answer.status_code for answer in answers] == [422, 404, 422]
    servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    shown = [str(attributes(s).get("url.path")) for s in servers]
    assert len(shown) == len(paths)
    assert all("[card redacted]" in path for path in shown), shown
    assert not any("4111" in path for path in shown), shown


async def test_a_method_outside_http_s_own_is_traced_as_other_under_one_span_name(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    # The parser takes WebDAV's and UPnP's methods too, from anyone: named by them, each
    # made span names of its own in the backend (the metrics already label them _OTHER).
    async with traced_service(sim, sqlite_url) as (service, _merchant):
        odd = [
            await service.anonymous.request(method, "/livez") for method in ("PROPFIND", "MKCOL")
        ]
        usual = await service.anonymous.request("GET", "/livez")
    assert [answer.status_code for answer in odd] == [405, 405]
    assert usual.status_code == 200
    servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert sorted(s.name for s in servers) == ["GET /livez", "HTTP /livez", "HTTP /livez"]
    others = [attributes(s) for s in servers if s.name.startswith("HTTP ")]
    assert [a["http.request.method"] for a in others] == ["_OTHER", "_OTHER"]
    assert [a["http.request.method_original"] for a in others] == ["PROPFIND", "MKCOL"]
    [get] = [attributes(s) for s in servers if s.name == "GET /livez"]
    assert get["http.request.method"] == "GET"
    assert "http.request.method_original" not in get


async def test_a_long_path_is_cut_before_card_numbers_are_looked_for(
    sim: RunningSimulator, sqlite_url: str, spans: InMemorySpanExporter
) -> None:
    # Looking for card numbers in 30 KB of "/1/1/1..." took a third of a second of event loop,
    # for any client, unauthenticated: the path is cut first, never through a card number.
    # Cut at 1,024 characters, through the card number: none of its digits is shown.
    cut = "/" + "x" * 1010 + "/4111-1111-1111-1111/"
    long_paths = ["/" + "1/" * 15_000, cut + "y" * 2000]
    async with traced_service(sim, sqlite_url) as (service, _merchant):
        answers = [await service.anonymous.get(path) for path in long_paths]
    assert [answer.status_code for answer in answers] == [404, 404]
    servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    shown = [str(attributes(s).get("url.path")) for s in servers]
    assert shown == ["…", "/" + "x" * 1010 + "…"], shown
