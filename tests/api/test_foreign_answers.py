"""A 4xx that is not PayTabs' answer, over real HTTP against the simulator.

A proxy, firewall, WAF or maintenance page in front of PayTabs answers ``403`` (or 400, 404...)
with HTML, not PayTabs' JSON error body. That is not PayTabs refusing the payment, and it may
come after PayTabs took the request: the service must neither mark the payment failed nor send
anything again before a query says PayTabs holds nothing (see also test_recovery_probes.py for
the breaker and its probes).
"""

from __future__ import annotations

from collections import Counter

import pytest

from paytabs_simulator.faults import Faults

from .api_support import Service, new_key
from .test_saved_cards import charge, save_card

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


def foreign_answer_after_processing(status: int = 403) -> Faults:
    """PayTabs takes the request, then a WAF in front answers HTML ``status`` instead of
    PayTabs' answer; queries still get through."""
    return Faults(
        error_rate=1.0,
        error_statuses=[status],
        error_phase="after",
        fault_paths=["/payment/request"],
    )


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_create_answered_by_a_foreign_4xx_is_unknown_not_refused(
    service: Service, status: int
) -> None:
    # Everything PayTabs-bound gets the HTML page, queries too: nothing can be resolved.
    service.sim.engine.set_faults(Faults(down=True, down_status=status))
    response = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 202, response.text
    payment = response.json()
    assert payment["state"] == "unknown"
    stored = await service.get(payment["id"])
    assert stored["state"] == "unknown"  # not "failed" as if PayTabs had refused it
    service.sim.engine.set_faults(Faults())
    assert await service.simulated(payment["cart_id"]) == []


async def test_a_create_whose_answer_a_waf_replaced_is_found_by_query_not_failed(
    service: Service,
) -> None:
    service.sim.engine.set_faults(foreign_answer_after_processing())
    response = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    # Found by query, as after a lost 502: PayTabs holds the page but the WAF ate its URL, so
    # the payment goes out again under a new cart id (docs/resilience.md, "Never charge twice").
    # Every attempt's answer eaten: no page anyone can reach, so no 201 without a page (it
    # said awaiting_customer with no redirect_url) but a failed payment and a 502.
    assert response.status_code == 502, response.text
    assert response.json()["type"].endswith("/gateway-no-page")
    payment = await service.get(response.json()["payment_id"])
    assert payment["state"] == "failed"
    carts = Counter(
        t.cart_id
        for t in service.sim.engine.transactions.values()
        if t.cart_id.startswith(payment["id"])
    )
    assert carts[payment["cart_id"]] == 1
    assert set(carts.values()) == {1}  # no cart id was sent twice


async def test_a_recurring_charge_whose_answer_a_waf_replaced_is_charged_once(
    service: Service,
) -> None:
    card_id = (await save_card(service))["saved_card_id"]
    service.sim.engine.set_faults(foreign_answer_after_processing())
    response = await charge(service, card_id)
    # PayTabs charged the card: the service must say so, not "refused by PayTabs".
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "completed"
    await service.callbacks_done()
    [sale] = await service.simulated(response.json()["cart_id"])
    assert sale["payment_result"]["response_status"] == "A"
    assert (await service.get(response.json()["id"]))["state"] == "completed"


async def test_a_refund_whose_answer_a_waf_replaced_is_refunded_once(service: Service) -> None:
    payment = await service.create("100.00")
    await service.pay(payment)
    await service.callbacks_done()
    service.sim.engine.set_faults(foreign_answer_after_processing())
    refund = await service.api.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "30.00"},
        headers={"Idempotency-Key": new_key()},
    )
    assert refund.status_code == 200, refund.text
    assert refund.json()["state"] == "partially_refunded"
    service.sim.engine.set_faults(Faults())
    refunds = [t for t in await service.simulated(payment["cart_id"]) if t["tran_type"] == "Refund"]
    assert len(refunds) == 1


async def test_real_paytabs_refusals_stay_definitive(service: Service) -> None:
    # JPY is not enabled on the simulator's profile: PayTabs' own 400 code 206, JSON body.
    response = await service.api.post(
        "/payments/v2/create",
        json=BODY | {"amount": "2500", "currency": "JPY"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422, response.text
    assert "Invalid currency code" in response.json()["detail"]
    assert (await service.get(response.json()["payment_id"]))["state"] == "failed"


async def test_health_says_paytabs_did_not_answer_behind_a_foreign_403(service: Service) -> None:
    service.sim.engine.set_faults(Faults(down=True, down_status=403))
    paytabs = (await service.anonymous.get("/health/paytabs")).json()
    assert paytabs["status"] == "warn"
    output = paytabs["checks"]["paytabs:responseTime"][0]["output"]
    assert output == "PayTabs did not answer: AmbiguousGatewayError", output
