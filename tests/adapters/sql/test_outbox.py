"""The outbox: CloudEvents 1.0 envelopes with the domain's stable ids, one row per event id."""

from __future__ import annotations

import json
from typing import NoReturn

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql import envelope
from paytabs_guard.adapters.sql.outbox import append, envelope_json
from paytabs_guard.adapters.sql.tables import outbox
from paytabs_guard.adapters.sql.writes import writes_for
from paytabs_guard.domain import Payment, TranType
from paytabs_guard.service.ports import UnitOfWorkFactory

from .builders import T0, fixed_clock, kwd, kwd_auth_captured_refunded

pytestmark = pytest.mark.anyio

# docs/states.md, "payment.created": produced by the domain, so the id is the real one.
DOCUMENTED_CREATED = {
    "specversion": "1.0",
    "id": "72305a7e-b5dc-5d40-bb41-8e7b296bb187",
    "source": "paytabs-guard",
    "type": "payment.created",
    "subject": "pay_01JH8Z3K",
    "time": "2025-01-29T09:00:00Z",
    "datacontenttype": "application/json",
    "data": {
        "payment_id": "pay_01JH8Z3K",
        "cart_id": "order-1001",
        "state": "created",
        "amount": "12.500",
        "currency": "KWD",
        "tran_type": "auth",
        "description": "Order 1",
    },
}


def _documented_payment() -> Payment:
    return Payment.create(
        id="pay_01JH8Z3K",
        cart_id="order-1001",
        profile_id=47170,
        amount=kwd("12.500"),
        tran_type=TranType.AUTH,
        description="Order 1",
        at=T0,
    )


def _no_floats(text: str) -> NoReturn:
    raise AssertionError(f"a float in an envelope: {text}")


def test_the_envelope_is_the_documented_cloudevent() -> None:
    (created,) = _documented_payment().pending_events
    assert envelope(created) == DOCUMENTED_CREATED
    assert json.loads(envelope_json(created)) == DOCUMENTED_CREATED


async def test_committed_events_are_stored_as_cloudevents_in_order(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    payment = kwd_auth_captured_refunded("pay_events")
    expected = [(event.event_id, event.type) for event in payment.pending_events]
    async with uow() as unit:
        unit.payments.add(payment)
        await unit.commit()
    async with engine.connect() as connection:
        rows = (await connection.execute(select(outbox).order_by(outbox.c.seq))).mappings().all()
    assert [(row["event_id"], row["type"]) for row in rows] == expected
    assert [row["type"] for row in rows] == [
        "payment.created",
        "payment.initiated",
        "payment.authorized",
        "payment.captured",
        "payment.completed",
        "payment.refunded",
    ]
    for row in rows:
        stored = json.loads(row["envelope"], parse_float=_no_floats)
        assert stored["specversion"] == "1.0"
        assert stored["id"] == row["event_id"]
        assert stored["source"] == "paytabs-guard"
        assert stored["subject"] == "pay_events"
        assert stored["time"].endswith("Z")
        assert stored["datacontenttype"] == "application/json"
        assert stored["data"]["payment_id"] == "pay_events"
        assert row["payment_id"] == "pay_events"
        assert row["created_at"] == fixed_clock()
        assert row["published_at"] is None
        assert row["claimed_by"] is None
        assert row["claimed_until"] is None
    refunded = json.loads(rows[-1]["envelope"])["data"]
    assert (refunded["amount"], refunded["refunded_total"]) == ("2.250", "2.250")


async def test_an_event_id_already_in_the_outbox_is_not_stored_twice(
    engine: AsyncEngine,
) -> None:
    events = _documented_payment().pending_events
    for _ in range(2):
        async with engine.begin() as connection:
            writes = writes_for(connection)
            await append(writes, [*events, *events], now=fixed_clock())
            await writes.finish()
    async with engine.connect() as connection:
        ids = list(await connection.scalars(select(outbox.c.event_id)))
    assert ids == [DOCUMENTED_CREATED["id"]]
