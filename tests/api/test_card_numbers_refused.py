"""Card numbers in the text a merchant sends are refused, not stored.

Descriptions, customer details and metadata are stored, sent to PayTabs, shown on the hosted
page, the console and every API answer. A card number there ("Order for card 4111 1111 1111
1111") would put card data on pages and in the database, where the log redactor cannot reach;
it is a 422 that names the field, and nothing is stored or sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from paytabs_guard.observability import has_card_number

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"description": "Order for card 4111 1111 1111 1111 cvv 123"}, "description"),
        ({"metadata": {"card": "5200000000000114"}}, "metadata"),
        ({"metadata": {"4111-1111-1111-1111": "x"}}, "metadata"),
        ({"customer": {"name": "A 4111111111111111"}}, "customer.name"),
    ],
)
async def test_a_card_number_in_free_text_is_a_422_and_nothing_is_stored(
    service: Service, extra: dict[str, Any], field: str
) -> None:
    before = len(service.sim.engine.transactions)
    response = await service.api.post(
        "/payments/v2/create", json={**BODY, **extra}, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert "card number" in errors[0]["message"]
    assert "4111" not in response.text
    assert "5200" not in response.text
    listed = await service.api.get("/payments/v2")
    assert listed.json()["data"] == []
    assert len(service.sim.engine.transactions) == before


async def test_numbers_that_are_not_card_numbers_pass(service: Service) -> None:
    text = "Order 4111111111111112, ref ORD4111111111111111, call +966 50 123 4567"
    response = await service.api.post(
        "/payments/v2/create",
        json={**BODY, "description": text[:128], "metadata": {"ref": "TST2633824054353"}},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 201, response.text
    assert response.json()["description"] == text


@pytest.mark.parametrize(
    ("text", "card"),
    [
        ("4111 1111 1111 1111", True),
        ("order 12 4111 1111 1111 1111", True),  # a card in groups after other digits
        ("x-4111111111111111-y", True),
        ("4111111111111112", False),  # fails the Luhn check
        ("ORD4111111111111111", False),  # glued to letters: an order reference
        ("4111 1111 1111", False),  # 12 digits
    ],
)
def test_what_counts_as_a_card_number(text: str, card: bool) -> None:
    assert has_card_number(text) is card
