"""``Prefer: wait=N`` holds a request only while PayTabs is needed and the breaker turns it
away. A request the breaker would not turn away without the header, because it needs no call
to PayTabs (its Idempotency-Key already holds an answer, or the saved card can never be
charged), is answered at once with it too, not after N seconds. Real HTTP, real simulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .api_support import Service, new_key
from .test_saved_cards import charge, save_card

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
# Far longer than the client's own timeout below: a request held for it fails the test.
LONG_WAIT = {"Prefer": "wait=30"}
PATIENCE = httpx.Timeout(8.0)


def held(service: Service) -> int:
    count: int = service.app.state.runtime.holding.held
    return count


async def test_a_create_whose_key_holds_an_answer_is_replayed_at_once(service: Service) -> None:
    key = new_key()
    first = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    service.container.gateway.breakers.get("create").force_open()
    replayed = await service.api.post(
        "/payments/v2/create",
        json=BODY,
        headers={"Idempotency-Key": key, **LONG_WAIT},
        timeout=PATIENCE,
    )
    assert replayed.status_code == 201, replayed.text
    assert replayed.json()["id"] == first.json()["id"]
    assert replayed.headers["idempotent-replayed"] == "true"
    assert "preference-applied" not in replayed.headers  # it was not held
    assert held(service) == 0


async def test_a_refund_whose_key_holds_an_answer_is_replayed_at_once(service: Service) -> None:
    payment = await service.create("50.00")
    await service.pay(payment)
    await service.callbacks_done()
    key = new_key()
    path = f"/payments/v2/{payment['id']}/refund"
    first = await service.api.post(path, json={"amount": "5.00"}, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    service.container.gateway.breakers.get("follow_up").force_open()
    replayed = await service.api.post(
        path,
        json={"amount": "5.00"},
        headers={"Idempotency-Key": key, **LONG_WAIT},
        timeout=PATIENCE,
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert "preference-applied" not in replayed.headers
    assert held(service) == 0


async def _charge_waiting(service: Service, card_id: str) -> httpx.Response:
    body: dict[str, Any] = {
        "saved_card_id": card_id,
        "amount": "20.00",
        "currency": "SAR",
        "description": "Membership, March",
    }
    return await service.api.post(
        "/payments/v2/recurring",
        json=body,
        headers={"Idempotency-Key": new_key(), **LONG_WAIT},
        timeout=PATIENCE,
    )


async def test_a_card_that_can_never_be_charged_is_refused_at_once_while_waiting(
    service: Service,
) -> None:
    paid = await save_card(service, customer_id="cust_7001")
    card_id = paid["saved_card_id"]
    assert (await service.api.delete(f"/payments/v2/cards/{card_id}")).status_code == 200
    service.container.gateway.breakers.get("token").force_open()
    deleted = await _charge_waiting(service, card_id)
    assert deleted.status_code == 409, deleted.text
    assert deleted.json()["type"].endswith("/saved-card-deleted")
    unknown = await _charge_waiting(service, "card_000000000000000000000000")
    assert unknown.status_code == 404, unknown.text
    assert held(service) == 0


async def test_a_chargeable_card_is_still_held_while_the_token_breaker_is_open(
    service: Service,
) -> None:
    paid = await save_card(service, customer_id="cust_7002")
    service.container.gateway.breakers.get("token").force_open()
    waiting = await service.api.post(
        "/payments/v2/recurring",
        json={
            "saved_card_id": paid["saved_card_id"],
            "amount": "20.00",
            "currency": "SAR",
            "description": "Membership, March",
        },
        headers={"Idempotency-Key": new_key(), "Prefer": "wait=1"},
    )
    assert waiting.status_code == 503, waiting.text
    assert waiting.headers["preference-applied"] == "wait=1"
    assert (await charge(service, paid["saved_card_id"])).status_code == 503


async def test_process_of_a_decided_or_unknown_payment_is_answered_at_once(
    service: Service,
) -> None:
    payment = await service.create("50.00")
    await service.pay(payment)
    await service.callbacks_done()
    service.container.gateway.breakers.get("query").force_open()
    decided = await service.api.get(
        f"/payments/v2/process/{payment['id']}", headers=LONG_WAIT, timeout=PATIENCE
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "completed"
    assert decided.json()["confirmed"] is True  # PayTabs had nothing more to say
    assert "preference-applied" not in decided.headers
    unknown = await service.api.get(
        "/payments/v2/process/pay_000000000000000000000000", headers=LONG_WAIT, timeout=PATIENCE
    )
    assert unknown.status_code == 404, unknown.text
    assert held(service) == 0


async def test_process_of_an_undecided_payment_is_still_held_while_the_circuit_is_open(
    service: Service,
) -> None:
    payment = await service.create("50.00")
    service.container.gateway.breakers.get("query").force_open()
    waited = await service.api.get(
        f"/payments/v2/process/{payment['id']}", headers={"Prefer": "wait=1"}
    )
    assert waited.status_code == 200, waited.text
    assert waited.json()["confirmed"] is False
    assert waited.headers["preference-applied"] == "wait=1"
