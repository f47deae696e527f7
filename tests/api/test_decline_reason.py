"""Why a payment failed is in the API (``last_payment_error``), from PayTabs' own answer."""

from __future__ import annotations

import pytest

from .api_support import DECLINED, VISA, Service, deliver, transaction

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        (DECLINED, {"code": "51", "message": "Insufficient Funds",
                    "decline_category": "insufficient_funds", "status": "D"}),
        ("4000000000000069", {"code": "54", "message": "Expired card",
                              "decline_category": "expired_card", "status": "D"}),
        ("4000000000000028", {"code": "96", "message": "Error",
                              "decline_category": "processing_error", "status": "E"}),
    ],
    ids=["declined", "expired-card", "error"],
)  # fmt: skip
async def test_a_failed_payment_says_why(
    any_service: Service, card: str, expected: dict[str, str]
) -> None:
    payment = await any_service.create("12.50", "SAR")
    await any_service.pay(payment, card)
    await any_service.callbacks_done()
    stored = await any_service.get(payment["id"])
    assert stored["state"] == "failed"  # an expired card is declined, not an expired page
    assert stored["last_payment_error"] == expected
    assert stored["failure_reason"] == ("error" if expected["status"] == "E" else "declined")
    processed = await any_service.api.get(f"/payments/v2/process/{payment['id']}")
    assert processed.json()["last_payment_error"] == expected


async def test_a_paid_or_open_payment_has_no_error(any_service: Service) -> None:
    payment = await any_service.create("12.50", "SAR")
    assert (await any_service.get(payment["id"]))["last_payment_error"] is None
    await any_service.pay(payment, VISA)
    await any_service.callbacks_done()
    stored = await any_service.get(payment["id"])
    assert stored["state"] == "completed"
    assert stored["last_payment_error"] is None
    assert stored["failure_reason"] is None


async def test_an_unknown_code_falls_back_to_the_status(service: Service) -> None:
    payment = await service.create("12.50", "SAR")
    body = transaction(payment, "D")
    body["payment_result"] |= {"response_code": "Z9", "response_message": "Refer to issuer"}
    assert (await deliver(service.anonymous, body)).json()["outcome"] == "processed"
    error = (await service.get(payment["id"]))["last_payment_error"]
    assert error == {"code": "Z9", "message": "Refer to issuer",
                     "decline_category": "card_declined", "status": "D"}  # fmt: skip
