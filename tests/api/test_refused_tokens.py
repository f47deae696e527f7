"""A saved card whose token PayTabs no longer knows, over real HTTP against the simulator
(SQLite, PostgreSQL).

PayTabs refuses such a token with HTTP 400 code 209 "Invalid Merchant Token": after a profile
change, a token deleted at PayTabs by other means (the dashboard, another integration) or a
token that expired. The card stayed listed as chargeable and every charge made a failed payment
and a 422 "fix the request", though nothing in the request could be fixed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from paytabs_guard.adapters.sql.tables import outbox, saved_cards

from .api_support import PROFILE_ID, SERVER_KEY, Service, new_key
from .test_saved_cards import charge, paytabs_token, save_card

pytestmark = pytest.mark.anyio


async def delete_at_paytabs(service: Service, token: str) -> None:
    """Delete the token at PayTabs through PayTabs' own API, behind the service's back."""
    async with httpx.AsyncClient(base_url=service.sim.base_url) as paytabs:
        deleted = await paytabs.post(
            "/payment/token/delete",
            json={"profile_id": PROFILE_ID, "token": token},
            headers={"authorization": SERVER_KEY},
        )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["code"] == 0


async def failed_events(service: Service, payment_id: str) -> list[Any]:
    """The data of the payment's ``payment.failed`` events, as the outbox holds them."""
    query = select(outbox.c.envelope).where(
        outbox.c.payment_id == payment_id, outbox.c.type == "payment.failed"
    )
    async with service.container.engine.connect() as connection:
        rows = (await connection.execute(query)).scalars()
        return [json.loads(envelope)["data"] for envelope in rows]


async def listed(service: Service, customer_id: str) -> list[Any]:
    response = await service.api.get(f"/payments/v2/customers/{customer_id}/cards")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_a_token_paytabs_no_longer_knows_makes_the_card_unusable(
    any_service: Service, captured: io.StringIO
) -> None:
    service = any_service
    paid = await save_card(service, customer_id="cust_7007")
    card_id = paid["saved_card_id"]
    token = await paytabs_token(service, paid["cart_id"])
    await delete_at_paytabs(service, token)

    key = new_key()
    refused = await charge(service, card_id, key=key)
    # Not a 422 "fix the request": nothing in it can be fixed, and no retry can help.
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/saved-card-invalid")
    assert problem["card_id"] == card_id
    assert "fix the request" not in problem["detail"]
    assert "no longer" in problem["detail"]
    assert "save_card" in problem["detail"]
    # The attempt is kept as a failed payment that says why; nothing was charged.
    failed = await service.get(problem["payment_id"])
    assert failed["state"] == "failed"
    assert failed["saved_card_id"] == card_id
    assert failed["failure_reason"] == "gateway_rejected"
    [event] = await failed_events(service, failed["id"])
    assert event["response_code"] == "209"
    assert "saved card is no longer valid at PayTabs" in event["response_message"]
    approved = [t for t in service.sim.engine.transactions.values() if t.status == "A"]
    assert len(approved) == 1  # the saving payment's sale alone

    # The card is no longer offered as chargeable...
    assert await listed(service, "cust_7007") == []
    # ...but its token is kept: PayTabs' word is about one profile, and a service pointed at
    # the wrong one must not lose its customers' cards on a round of renewals.
    async with service.container.engine.connect() as connection:
        row = (
            await connection.execute(
                select(saved_cards.c.token, saved_cards.c.refused_at).where(
                    saved_cards.c.id == card_id
                )
            )
        ).one()
    assert row.token == token
    assert row.refused_at is not None
    # ...and a later charge is refused here, without asking PayTabs.
    sent = service.sim.engine.stats["requests /payment/request"]
    later = await charge(service, card_id)
    assert later.status_code == 409, later.text
    assert later.json()["type"].endswith("/saved-card-invalid")
    assert "payment_id" not in later.json()  # nothing was stored or sent
    assert "save_card" in later.json()["detail"]
    assert service.sim.engine.stats["requests /payment/request"] == sent
    # The same even while the token breaker is open: a card that cannot be charged is
    # refused as such, not told to come back later.
    breaker = service.container.gateway.breakers.get("token")
    breaker.force_open()
    closed = await charge(service, card_id)
    assert closed.status_code == 409, closed.text
    assert closed.json()["type"].endswith("/saved-card-invalid")
    breaker.reset()

    # A retry of the refused charge under its key answers as the first time did.
    again = await charge(service, card_id, key=key)
    assert (again.status_code, again.json()) == (409, problem)
    assert service.sim.engine.stats["requests /payment/request"] == sent

    # Deleting the card still works, without a token to delete at PayTabs.
    deleted = await service.api.delete(f"/payments/v2/cards/{card_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted_at"] is not None
    assert (await charge(service, card_id)).json()["type"].endswith("/saved-card-deleted")
    # The token, refused or not, is still a credential: never shown, never logged.
    for response in (refused, later, again, deleted):
        assert token not in response.text
    assert token not in captured.getvalue()


async def test_a_charge_answered_before_the_token_was_refused_replays_as_it_was(
    any_service: Service,
) -> None:
    service = any_service
    paid = await save_card(service, customer_id="cust_7008")
    card_id = paid["saved_card_id"]
    key = new_key()
    first = await charge(service, card_id, key=key)
    assert first.status_code == 201, first.text
    await delete_at_paytabs(service, await paytabs_token(service, paid["cart_id"]))
    assert (await charge(service, card_id)).status_code == 409
    replayed = await charge(service, card_id, key=key)
    assert (replayed.status_code, replayed.json()) == (201, first.json())


async def test_another_refusal_leaves_the_card_chargeable(any_service: Service) -> None:
    """Only PayTabs' token refusal marks the card: a charge refused for anything else (here a
    currency the profile does not take, code 206) is the 422 it was, and the card stays."""
    service = any_service
    paid = await save_card(service, customer_id="cust_7009")
    card_id = paid["saved_card_id"]
    body = {"saved_card_id": card_id, "amount": "20.00", "currency": "INR", "description": "x"}
    refused = await service.api.post(
        "/payments/v2/recurring", json=body, headers={"Idempotency-Key": new_key()}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("/gateway-rejected")
    assert [card["id"] for card in await listed(service, "cust_7009")] == [card_id]
    charged = await charge(service, card_id)
    assert charged.status_code == 201, charged.text
