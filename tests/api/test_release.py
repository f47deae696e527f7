"""POST /payments/v2/{id}/release over real HTTP against the simulator (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio


async def test_release_ends_an_authorisation_once_with_a_release_at_paytabs(
    any_service: Service,
) -> None:
    payment = await any_service.create("20.00", tran_type="auth")
    sale = await any_service.create("10.00")
    for paid in (payment, sale):
        await any_service.pay(paid)
    await any_service.callbacks_done()
    assert (await any_service.get(payment["id"]))["state"] == "authorized"

    key = new_key()
    url = f"/payments/v2/{payment['id']}/release"
    released = await any_service.api.post(url, headers={"Idempotency-Key": key})
    assert released.status_code == 200, released.text
    assert released.json()["state"] == "voided"
    replay = await any_service.api.post(url, headers={"Idempotency-Key": key})
    assert replay.status_code == 200
    assert replay.json() == released.json()

    simulated = await any_service.simulated(payment["cart_id"])
    kinds = sorted(tx["tran_type"] for tx in simulated)
    assert kinds.count("Release") == 1, kinds  # the replay did not send a second one

    again = await any_service.api.post(url, headers={"Idempotency-Key": new_key()})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "voided" in again.json()["detail"]
    # A sale has no authorisation to release: 409 that says why, and nothing is sent.
    not_auth = await any_service.api.post(
        f"/payments/v2/{sale['id']}/release", headers={"Idempotency-Key": new_key()}
    )
    assert not_auth.status_code == 409
    assert "authorized" in not_auth.json()["detail"]
    assert all(tx["tran_type"] != "Release" for tx in await any_service.simulated(sale["cart_id"]))
    assert await any_service.outbox_events(payment["id"], "payment.voided") == 1
