"""PayTabs answering with a transaction reference another payment already holds.

Real PayTabs never hands a ``tran_ref`` out twice, but a database kept across a simulator
restarted with its seed, or pointed at another profile, sees exactly that. It used to be a 500
after PayTabs had opened the page, with the payment left initiating for reconciliation to trip
over on every pass.
"""

from __future__ import annotations

import pytest

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


async def test_a_page_under_a_reference_already_held_is_not_handed_out(
    any_service: Service,
) -> None:
    service, engine = any_service, any_service.sim.engine
    engine.rng.seed(7)
    first = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    assert first.status_code == 201, first.text
    held = first.json()
    # The simulator restarts with the same seed: it forgets its transactions and draws the
    # same reference again.
    engine.rng.seed(7)
    engine.transactions.clear()

    key = new_key()
    second = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert second.status_code == 502, second.text
    problem = second.json()
    assert problem["type"].endswith("/gateway-reference-conflict")
    assert held["tran_ref"] in problem["detail"]
    refused = await service.get(problem["payment_id"])
    assert refused["state"] == "failed"
    assert refused["tran_ref"] is None
    assert refused.get("redirect_url") is None
    # The payment that held the reference first is untouched.
    first_now = await service.get(held["id"])
    assert (first_now["state"], first_now["tran_ref"]) == ("awaiting_customer", held["tran_ref"])

    # Nothing was kept for the key: the same request again is a new payment, with a new page.
    again = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] not in (held["id"], refused["id"])
    assert again.json()["tran_ref"] != held["tran_ref"]
