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
