"""A capture PayTabs reports pending is the payment's one capture until it settles.

One capture per payment (docs/states.md, decision 5): a second capture's success is
quarantined. Yet while PayTabs reported the first capture pending (``P``), the payment was still
``authorized`` and the guard only held the pending amount back, so a capture of the rest was
sent. PayTabs took both: the customer was charged the whole authorisation, while the payment
kept the second capture as a conflict, and once the first settled showed 40.00 captured and
40.00 refundable of the 100.00 PayTabs holds. Now the second capture is refused (409, nothing
sent) until the pending one settles; if it is declined, a capture may be tried again.
"""

from __future__ import annotations

from typing import Any

import pytest

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio


async def _authorized(service: Service) -> dict[str, Any]:
    payment = await service.create("100.00", tran_type="auth")
    await service.pay(payment)
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "authorized"
    return dict(payment)


async def _captures_at_paytabs(service: Service, cart_id: str) -> list[Any]:
    return [t for t in await service.simulated(cart_id) if t["tran_type"] == "Capture"]


async def test_no_second_capture_is_sent_while_paytabs_reports_the_first_pending(
    any_service: Service,
) -> None:
    service = any_service
    payment = await _authorized(service)
    await service.sim_test_api("PATCH", "/_sim/faults", json={"capture_pending": True})
    first = await service.follow_up(payment["id"], "capture", "40.00")
    assert first.status_code == 200, first.text
    assert (first.json()["state"], first.json()["pending_captures"]) == ("authorized", "40.00")

    rest = await service.follow_up(payment["id"], "capture", "60.00")
    assert rest.status_code == 409, rest.text
    assert "still waiting for PayTabs" in rest.json()["detail"]
    assert len(await _captures_at_paytabs(service, payment["cart_id"])) == 1

    # PayTabs settles the first capture: the payment holds exactly what PayTabs captured.
    (pending,) = await _captures_at_paytabs(service, payment["cart_id"])
    await service.sim_test_api("POST", f"/_sim/transactions/{pending['tran_ref']}/settle", json={})
    await service.callbacks_done()
    settled = await service.get(payment["id"])
    assert (settled["state"], settled["captured"]) == ("completed", "40.00")
    assert (settled["refundable"], settled["has_conflict"]) == ("40.00", False)
    assert await service.outbox_events(payment["id"], "payment.captured") == 1


async def test_a_capture_may_be_tried_again_once_the_pending_one_is_declined(
    service: Service,
) -> None:
    payment = await _authorized(service)
    await service.sim_test_api("PATCH", "/_sim/faults", json={"capture_pending": True})
    assert (await service.follow_up(payment["id"], "capture", "40.00")).status_code == 200
    (pending,) = await _captures_at_paytabs(service, payment["cart_id"])
    settle = f"/_sim/transactions/{pending['tran_ref']}/settle"
    await service.sim_test_api("POST", settle, json={"response_status": "D"})
    await service.callbacks_done()
    await service.sim_test_api("PATCH", "/_sim/faults", json={"capture_pending": False})

    again = await service.follow_up(payment["id"], "capture", "100.00")
    assert again.status_code == 200, again.text
    assert (again.json()["state"], again.json()["captured"]) == ("completed", "100.00")


async def test_a_void_waits_for_a_pending_capture_and_its_key_stays_free(
    service: Service,
) -> None:
    # Refused for the moment (the capture may be declined), not "refund instead" kept for the
    # key: once the capture is declined, the same request under the same key voids.
    payment = await _authorized(service)
    await service.sim_test_api("PATCH", "/_sim/faults", json={"capture_pending": True})
    assert (await service.follow_up(payment["id"], "capture", "100.00")).status_code == 200
    key = new_key()
    void = f"/payments/v2/{payment['id']}/void"
    waiting = await service.api.post(void, headers={"Idempotency-Key": key})
    assert waiting.status_code == 409, waiting.text
    assert "a capture sent at" in waiting.json()["detail"]
    assert not [t for t in await service.simulated(payment["cart_id"]) if t["tran_type"] == "Void"]

    (pending,) = await _captures_at_paytabs(service, payment["cart_id"])
    settle = f"/_sim/transactions/{pending['tran_ref']}/settle"
    await service.sim_test_api("POST", settle, json={"response_status": "D"})
    await service.callbacks_done()
    voided = await service.api.post(void, headers={"Idempotency-Key": key})
    assert voided.status_code == 200, voided.text
    assert voided.json()["state"] == "voided"
    assert "idempotent-replayed" not in voided.headers
