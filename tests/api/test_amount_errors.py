"""Amount errors name the rule that was broken, in one problem shape, on the amount field."""

from __future__ import annotations

import pytest

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("1.2345", "KWD", "KWD takes at most 3 decimal places; this amount has 4"),
        ("1.234", "SAR", "SAR takes at most 2 decimal places; this amount has 3"),
        ("0", "SAR", "must be more than zero (the smallest is 0.01)"),
        ("0.000", "KWD", "must be more than zero (the smallest is 0.001)"),
        ("-1", "SAR", 'must be a decimal string such as "12.50"'),
        ("1e3", "SAR", "no exponent"),
    ],
)
async def test_amount_errors_say_what_is_wrong(
    service: Service, amount: str, currency: str, message: str
) -> None:
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": amount, "currency": currency, "description": "Order 1"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/invalid-request")
    (error,) = problem["errors"]
    assert error["field"] == "amount"
    assert message in error["message"]
    assert "positive" not in error["message"]  # "1.2345" is positive; that was never the issue
    assert f" {amount} " not in f" {error['message']} "  # the value sent is never echoed
    listing = await service.api.get("/payments/v2")
    assert listing.json()["data"] == []  # nothing was stored


async def test_an_unknown_currency_is_reported_on_the_currency(service: Service) -> None:
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": "1.00", "currency": "XYZ", "description": "Order 1"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["currency"]


@pytest.mark.parametrize("operation", ["refund", "capture"])
@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1.000", "SAR takes at most 2 decimal places; this amount has 3"),
        ("0.0100000", "SAR takes at most 2 decimal places; this amount has 7"),
    ],
)
async def test_a_follow_up_amount_follows_the_create_s_decimal_rule(
    service: Service, operation: str, amount: str, message: str
) -> None:
    # "1.000" was refused on a create and refunded as 1.00: one rule for every amount a
    # client writes, and nothing sent to PayTabs when it is broken.
    tran_type = "sale" if operation == "refund" else "auth"
    payment = await service.create("10.00", "SAR", tran_type=tran_type)
    await service.pay(payment)
    await service.callbacks_done()
    before = await service.simulated(payment["id"])
    response = await service.api.post(
        f"/payments/v2/{payment['id']}/{operation}",
        json={"amount": amount},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert await service.simulated(payment["id"]) == before


@pytest.mark.parametrize("amount", ["123456789012345678", "1.0000000000000"])
async def test_an_amount_too_long_is_told_the_digit_limits(service: Service, amount: str) -> None:
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": amount, "currency": "SAR", "description": "Order 1"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert "1 to 12 digits" in error["message"]


@pytest.mark.parametrize(
    ("amount", "currency"), [("10000000000.00", "SAR"), ("9999999999.999", "KWD")]
)
async def test_an_amount_past_paytabs_ceiling_is_a_422_and_nothing_is_stored(
    service: Service, amount: str, currency: str
) -> None:
    # PayTabs takes at most 9999999999.99: a larger amount passed our shape and became a
    # stored failed payment (events, stats) instead of a plain 422.
    before = len(service.sim.engine.transactions)
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": amount, "currency": currency, "description": "Order 1"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/invalid-request")
    (error,) = response.json()["errors"]
    assert error["field"] == "amount"
    assert "at most 9999999999.99" in error["message"]
    assert (await service.api.get("/payments/v2")).json()["data"] == []
    assert len(service.sim.engine.transactions) == before
    largest = await service.api.post(
        "/payments/v2/create",
        json={"amount": "9999999999.99", "currency": "SAR", "description": "Order 1"},
        headers={"Idempotency-Key": new_key()},
    )
    assert not largest.json().get("type", "").endswith("/invalid-request"), largest.text


@pytest.mark.parametrize("operation", ["refund", "capture", "recurring"])
async def test_every_amount_a_client_writes_has_paytabs_ceiling(
    service: Service, operation: str
) -> None:
    tran_type = "auth" if operation == "capture" else "sale"
    payment = await service.create("10.00", "SAR", tran_type=tran_type)
    await service.pay(payment)
    await service.callbacks_done()
    before = await service.simulated(payment["id"])
    path = (
        "/payments/v2/recurring"
        if operation == "recurring"
        else f"/payments/v2/{payment['id']}/{operation}"
    )
    body = {"amount": "10000000000.00"}
    if operation == "recurring":
        body |= {"currency": "SAR", "description": "Monthly", "saved_card_id": "card_1"}
    response = await service.api.post(path, json=body, headers={"Idempotency-Key": new_key()})
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/invalid-request")
    assert [e["field"] for e in response.json()["errors"]] == ["amount"]
    assert await service.simulated(payment["id"]) == before


@pytest.mark.parametrize(
    ("customer", "field", "message"),
    [
        ({"city": "x" * 65}, "customer.city", "String should have at most 64 characters"),
        ({"name": "n" * 129}, "customer.name", "String should have at most 128 characters"),
        ({"zip": "1" * 17}, "customer.zip", "String should have at most 16 characters"),
    ],
)
async def test_an_optional_text_too_long_is_told_in_characters(
    service: Service, customer: dict[str, str], field: str, message: str
) -> None:
    """A length rule on an optional field is pydantic's rule for collections: its message said
    "at most 64 items", which leaves a client wondering what an item of a city is."""
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": "5.00", "currency": "SAR", "description": "Order 1", "customer": customer},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == field
    assert error["message"] == message
