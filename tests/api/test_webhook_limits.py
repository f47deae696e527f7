"""Second guards, over real HTTP, for invariants whose first test sits at a lower level.

* WEBHOOK_MAX_BODY_BYTES is what the receiver applies (the unit tests use their own limit);
* a declared ``Content-Length`` over the limit is refused before any body byte arrives (the
  streamed count alone would wait for a body that never comes);
* an applied callback wakes the outbox relay at once (its poll interval is an hour here);
* a refund result beyond what is left is quarantined, and one in another currency too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlsplit

import pytest

from paytabs_guard.adapters.events import CloudEvent, OutboxRelay
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, deliver, encode, running_service, transaction

pytestmark = pytest.mark.anyio

LIMIT = 2048  # the smallest limit Settings allows is 1024; the default is 65536


@pytest.fixture
async def small_limit(sim: RunningSimulator, sqlite_url: str) -> AsyncIterator[Service]:
    """The service with WEBHOOK_MAX_BODY_BYTES set well below its default."""
    env = {"WEBHOOK_MAX_BODY_BYTES": str(LIMIT)}
    async with running_service(sim, sqlite_url, env=env) as running:
        yield running


def padded(payment: dict[str, Any], size: int) -> bytes:
    """A callback body for ``payment`` of exactly ``size`` bytes (an extra field pads it)."""
    body = transaction(payment) | {"pad": ""}
    missing = size - len(encode(body))
    assert missing >= 0
    return encode(body | {"pad": "x" * missing})


async def test_the_receiver_applies_the_configured_body_limit(small_limit: Service) -> None:
    payment = await small_limit.create()
    over = await deliver(small_limit.anonymous, padded(payment, LIMIT + 1))
    assert over.status_code == 413
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json()["max_bytes"] == LIMIT
    assert (await small_limit.get(payment["id"]))["state"] == "awaiting_customer"
    at_limit = await deliver(small_limit.anonymous, padded(payment, LIMIT))
    assert at_limit.status_code == 200
    assert (await small_limit.get(payment["id"]))["state"] == "completed"


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_arrives(
    small_limit: Service,
) -> None:
    # Over a raw socket: the head declares a huge body and none follows. Only the check of the
    # declared length can answer; reading the body would wait for bytes that never come.
    address = urlsplit(small_limit.url)
    assert address.hostname is not None
    assert address.port is not None
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            b"POST /payments/v2/webhook HTTP/1.1\r\n"
            b"Host: paytabs-guard\r\n"
            b"Content-Type: application/json\r\n"
            b"Signature: " + b"0" * 64 + b"\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head


# ---- the relay wakes up for a callback ---------------------------------------------------------


@pytest.fixture
def hourly_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's relay polls once an hour: only notify() can make it deliver sooner."""
    run_forever = OutboxRelay.run_forever

    def hourly(self: OutboxRelay, stop: asyncio.Event, interval: float = 1.0) -> Awaitable[None]:
        return run_forever(self, stop, interval=3600)

    monkeypatch.setattr(OutboxRelay, "run_forever", hourly)


async def test_an_applied_callback_wakes_the_relay(
    hourly_relay: None, sim: RunningSimulator, sqlite_url: str
) -> None:
    async with running_service(sim, sqlite_url) as service:
        relay = service.container.relay
        initiated, completed = asyncio.Event(), asyncio.Event()

        async def on_initiated(event: CloudEvent) -> None:
            initiated.set()

        async def on_completed(event: CloudEvent) -> None:
            completed.set()

        service.container.events.on("payment.initiated", on_initiated)
        service.container.events.on("payment.completed", on_completed)
        payment = await service.create()
        # The create's events go out, and the relay goes back to sleep with nothing pending:
        # a callback that arrived during that run would ride along without waking it.
        await asyncio.wait_for(initiated.wait(), timeout=10)
        await asyncio.wait_for(relay.sleeping.wait(), timeout=10)
        response = await deliver(service.anonymous, transaction(payment))
        assert response.json()["outcome"] == "processed"
        await asyncio.wait_for(completed.wait(), timeout=10)


# ---- quarantine over HTTP ----------------------------------------------------------------------


async def completed_payment(service: Service, amount: str = "100.00") -> dict[str, Any]:
    payment: dict[str, Any] = await service.create(amount)
    sale = await deliver(service.anonymous, transaction(payment))
    assert sale.json()["outcome"] == "processed"
    return payment


def refund_of(payment: dict[str, Any], tran_ref: str, amount: str, **change: Any) -> bytes:
    return encode(
        transaction(
            payment,
            tran_ref=tran_ref,
            tran_type="Refund",
            amount=amount,
            previous_tran_ref=payment["tran_ref"],
            **change,
        )
    )


async def test_a_refund_callback_beyond_what_is_left_is_quarantined(service: Service) -> None:
    payment = await completed_payment(service)
    first = await deliver(service.anonymous, refund_of(payment, "TST_R1", "60.00"))
    assert first.json()["outcome"] == "processed"
    assert (await service.get(payment["id"]))["state"] == "partially_refunded"
    events = await service.outbox_events(payment["id"])

    beyond = await deliver(service.anonymous, refund_of(payment, "TST_R2", "40.01"))
    assert beyond.status_code == 200
    assert beyond.json()["outcome"] == "quarantined"
    stored = await service.get(payment["id"])
    assert stored["state"] == "partially_refunded"
    # PayTabs says it refunded more than is left: not applied, but the payment asks for review.
    assert stored["has_conflict"] is True
    assert await service.outbox_events(payment["id"]) == events + 1
    assert await service.outbox_events(payment["id"], "payment.conflict") == 1

    rest = await deliver(service.anonymous, refund_of(payment, "TST_R3", "40.00"))
    assert rest.json()["outcome"] == "processed"
    assert (await service.get(payment["id"]))["state"] == "refunded"


async def test_a_refund_callback_in_another_currency_is_quarantined(service: Service) -> None:
    payment = await completed_payment(service)
    events = await service.outbox_events(payment["id"])
    other = await deliver(service.anonymous, refund_of(payment, "TST_R9", "10.00", currency="AED"))
    assert other.status_code == 200
    assert other.json()["outcome"] == "quarantined"
    stored = await service.get(payment["id"])
    assert stored["state"] == "completed"
    assert stored["has_conflict"] is True
    assert await service.outbox_events(payment["id"], "payment.conflict") == 1
    assert await service.outbox_events(payment["id"]) == events + 1


def test_padding_keeps_the_body_valid_json() -> None:
    body = padded({"tran_ref": "T", "cart_id": "c", "description": "d", "currency": "SAR",
                   "amount": "1.00"}, 900)  # fmt: skip
    assert len(body) == 900
    assert json.loads(body)["pad"].startswith("x")


async def test_a_compressed_callback_is_a_415(service: Service) -> None:
    payment = await service.create()
    response = await deliver(service.anonymous, transaction(payment), **{"Content-Encoding": "br"})
    assert response.status_code == 415, response.text
    assert (await service.get(payment["id"]))["state"] != "completed"
