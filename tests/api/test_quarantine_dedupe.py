"""A quarantined callback does not burn the dedupe key: the genuine result still applies, an
exact repeat is a duplicate, and a different mismatch is quarantined (and counted) again."""

from __future__ import annotations

import pytest

from .api_support import Service, deliver, encode, transaction

pytestmark = pytest.mark.anyio


def _quarantined(service: Service) -> float:
    return service.metric(
        "paytabs_guard_payment_results_total", kind="quarantined", source="callback"
    )


async def test_the_genuine_result_after_a_mismatched_one_completes_the_payment(
    any_service: Service,
) -> None:
    payment = await any_service.create("12.50", "SAR")
    forged = await deliver(any_service.anonymous, transaction(payment, "A", tran_total="0.01"))
    assert forged.json()["outcome"] == "quarantined"
    genuine = await deliver(any_service.anonymous, transaction(payment, "A"))
    assert genuine.json()["outcome"] == "processed"
    assert (await any_service.get(payment["id"]))["state"] == "completed"
    assert await any_service.outbox_events(payment["id"], "payment.completed") == 1
    # Once applied, the key does its job: the genuine result again is a duplicate.
    again = await deliver(any_service.anonymous, transaction(payment, "A"))
    assert again.json()["outcome"] == "duplicate"


async def test_repeats_of_a_quarantined_delivery(any_service: Service) -> None:
    payment = await any_service.create("12.50", "SAR")
    raw = encode(transaction(payment, "A", tran_total="0.01"))
    assert (await deliver(any_service.anonymous, raw)).json()["outcome"] == "quarantined"
    assert _quarantined(any_service) == 1
    # The same bytes again: a retry of the same delivery, no second alert.
    assert (await deliver(any_service.anonymous, raw)).json()["outcome"] == "duplicate"
    assert _quarantined(any_service) == 1
    # A differently mismatched delivery for the same tran_ref and status is news.
    other = transaction(payment, "A", tran_currency="USD")
    assert (await deliver(any_service.anonymous, other)).json()["outcome"] == "quarantined"
    assert _quarantined(any_service) == 2
    assert (await any_service.get(payment["id"]))["state"] == "awaiting_customer"
    genuine = await deliver(any_service.anonymous, transaction(payment, "A"))
    assert genuine.json()["outcome"] == "processed"
    assert (await any_service.get(payment["id"]))["state"] == "completed"
