"""A quarantined callback does not burn the dedupe key: the genuine result still applies, an
exact repeat is a duplicate, and a different mismatch is quarantined (and counted) again."""

from __future__ import annotations

import io
import json
from typing import Any

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


def _quarantine_alerts(captured: io.StringIO) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "webhook_quarantined"]


@pytest.mark.parametrize(
    "mismatch",
    [
        {"profile_id": 111111},
        {"tran_total": "0.01"},
        {"currency": "AED"},
        {"cart_id": "cart-of-someone-else"},
    ],
    ids=["profile_id", "tran_total", "currency", "cart_id"],
)
async def test_a_mismatched_result_after_the_genuine_one_is_quarantined_not_a_duplicate(
    any_service: Service, captured: io.StringIO, mismatch: dict[str, Any]
) -> None:
    # Business checks (6) run before dedupe (7): the genuine A took the key
    # paytabs:{tran_ref}:A, and a mismatched A for the same tran_ref is still news.
    payment = await any_service.create("12.50", "SAR")
    genuine = encode(transaction(payment, "A"))
    assert (await deliver(any_service.anonymous, genuine)).json()["outcome"] == "processed"
    before = await any_service.get(payment["id"])
    events = await any_service.outbox_events(payment["id"])

    raw = encode(transaction(payment, "A", **mismatch))
    assert (await deliver(any_service.anonymous, raw)).json()["outcome"] == "quarantined"
    assert _quarantined(any_service) == 1
    alerts = _quarantine_alerts(captured)
    assert len(alerts) == 1
    assert alerts[0]["level"] == "warning"
    assert alerts[0]["tran_ref"] == payment["tran_ref"]
    # The exact bytes again are a retry of that delivery: duplicate, no second alert.
    assert (await deliver(any_service.anonymous, raw)).json()["outcome"] == "duplicate"
    assert _quarantined(any_service) == 1
    assert len(_quarantine_alerts(captured)) == 1
    # PayTabs says it charged something else on this payment's own transaction: the payment
    # keeps the state the genuine A gave it, and says it needs review (one conflict event).
    # Someone else's result (another profile or cart) writes nothing on this payment.
    ours = "profile_id" not in mismatch and "cart_id" not in mismatch
    noted = await any_service.get(payment["id"])
    assert noted["has_conflict"] is ours
    assert {**noted, "has_conflict": False, "updated_at": before["updated_at"]} == before
    assert await any_service.outbox_events(payment["id"]) == events + ours
    assert await any_service.outbox_events(payment["id"], "payment.conflict") == ours
    # The genuine delivery again is a plain duplicate that changes nothing.
    assert (await deliver(any_service.anonymous, genuine)).json()["outcome"] == "duplicate"
    assert await any_service.get(payment["id"]) == noted
    assert await any_service.outbox_events(payment["id"]) == events + ours


async def test_a_known_refund_repeated_with_another_amount_is_quarantined_not_a_duplicate(
    any_service: Service,
) -> None:
    payment = await any_service.create("12.50", "SAR")
    await deliver(any_service.anonymous, transaction(payment, "A"))

    def refund(amount: str) -> dict[str, Any]:
        return transaction(
            payment,
            "A",
            tran_ref="TST9900000000001",
            tran_type="Refund",
            amount=amount,
            previous_tran_ref=payment["tran_ref"],
        )

    assert (await deliver(any_service.anonymous, refund("5.00"))).json()["outcome"] == "processed"
    other = await deliver(any_service.anonymous, refund("7.00"))
    assert other.json()["outcome"] == "quarantined"
    assert _quarantined(any_service) == 1
    after = await any_service.get(payment["id"])
    assert after["refunded"] == "5.00"
    # The genuine repeat is still what it was: a duplicate, no second effect.
    assert (await deliver(any_service.anonymous, refund("5.00"))).json()["outcome"] == "duplicate"
