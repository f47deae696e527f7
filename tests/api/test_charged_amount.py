"""An authorised callback must have charged what the payment is for (tran_total/tran_currency),
unless the merchant allows PayTabs' currency conversion, which is then recorded and shown."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from paytabs_guard.adapters.sql.tables import payment_conflicts
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, deliver, running_service, transaction


async def _notes(service: Service, payment_id: str) -> int:
    query = select(func.count()).where(payment_conflicts.c.payment_id == payment_id)
    async with service.container.engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


pytestmark = pytest.mark.anyio


async def _quarantined(service: Service, **change: Any) -> None:
    payment = await service.create("12.50", "SAR")
    events = await service.outbox_events(payment["id"])
    response = await deliver(service.anonymous, transaction(payment, "A") | change)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "quarantined"
    stored = await service.get(payment["id"])
    assert stored["state"] == "awaiting_customer"
    assert stored["charged_amount"] is None
    # Not applied, but not hidden: PayTabs says the customer's money moved on this payment's
    # own transaction, so the payment asks for review, with one payment.conflict event.
    assert stored["has_conflict"] is True
    assert await service.outbox_events(payment["id"]) == events + 1
    assert await service.outbox_events(payment["id"], "payment.conflict") == 1
    # The same news in other bytes (the IPN beside the callback): alerted again, noted once.
    again = await deliver(
        service.anonymous, transaction(payment, "A") | change | {"customer_details": {}}
    )
    assert again.json()["outcome"] == "quarantined"
    assert await service.outbox_events(payment["id"]) == events + 1
    assert await _notes(service, payment["id"]) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"tran_total": "0.01"},
        {"tran_total": "12.49"},
        {"tran_currency": "USD"},
        {"tran_currency": "USD", "tran_total": "3.33"},
        {"tran_total": "0"},
        {"tran_total": "", "tran_currency": ""},
    ],
    ids=["total-0.01", "total-short", "other-currency", "converted", "zero", "empty"],
)
async def test_an_authorised_callback_that_charged_something_else_is_quarantined(
    any_service: Service, change: dict[str, str]
) -> None:
    await _quarantined(any_service, **change)
    assert (
        any_service.metric(
            "paytabs_guard_payment_results_total", kind="quarantined", source="callback"
        )
        == 2
    )


async def test_a_charge_that_matches_completes_and_is_shown(any_service: Service) -> None:
    payment = await any_service.create("12.50", "SAR")
    response = await deliver(any_service.anonymous, transaction(payment, "A"))
    assert response.json()["outcome"] == "processed"
    stored = await any_service.get(payment["id"])
    assert stored["state"] == "completed"
    assert (stored["charged_amount"], stored["charged_currency"]) == ("12.50", "SAR")


async def test_a_declined_callback_with_nothing_charged_still_applies(
    any_service: Service,
) -> None:
    payment = await any_service.create("12.50", "SAR")
    body = transaction(payment, "D") | {"tran_total": "0", "tran_currency": ""}
    response = await deliver(any_service.anonymous, body)
    assert response.json()["outcome"] == "processed"
    assert (await any_service.get(payment["id"]))["state"] == "failed"


async def test_with_currency_conversion_allowed_the_charge_is_recorded(
    sim: RunningSimulator, database_url: str
) -> None:
    env = {"PAYTABS_CURRENCY_CONVERSION": "true"}
    async with running_service(sim, database_url, env=env) as service:
        payment = await service.create("12.50", "SAR")
        converted = transaction(payment, "A") | {"tran_currency": "USD", "tran_total": "3.33"}
        response = await deliver(service.anonymous, converted)
        assert response.json()["outcome"] == "processed"
        stored = await service.get(payment["id"])
        assert stored["state"] == "completed"
        assert (stored["amount"], stored["currency"]) == ("12.50", "SAR")
        assert (stored["charged_amount"], stored["charged_currency"]) == ("3.33", "USD")
        # Conversion explains another currency, never a different amount in ours.
        await _quarantined(service, tran_total="0.01")
