"""Refunds whose outcome was pending or lost are settled by reconciliation, over real HTTP
against the simulator, on SQLite and PostgreSQL.

PayTabs sends no callback for a follow-up (the service sends none), so a refund answered
``P``, or done by PayTabs with its answer lost (the API's 202), is learnt only by asking.
Before the fix the payment stayed ``completed`` with nothing refunded, ``paytabs-guard
reconcile`` never looked at it and ``payment.refunded`` was never emitted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from testkit.held_answers import held_answers

from .api_support import Service, new_key, reconcile_now

pytestmark = pytest.mark.anyio


async def _completed(service: Service) -> dict[str, Any]:
    payment = await service.create("100.00")
    await service.pay(payment)
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "completed"
    return dict(payment)


async def _hold(service: Service, payment_id: str) -> object:
    async with service.container.payments.uow() as uow:
        payment = await uow.payments.get(payment_id)
    assert payment is not None
    return payment.hold


async def _assert_refunded_once(service: Service, database_url: str, payment_id: str) -> None:
    payment = await service.get(payment_id)
    assert payment["state"] == "partially_refunded"
    assert payment["refunded"] == "30.00"
    assert payment["refundable"] == "70.00"
    assert await service.outbox_events(payment_id, "payment.refunded") == 1
    assert await _hold(service, payment_id) is None

    again = await reconcile_now(service, database_url)
    assert (again["examined"], again["changed"]) == (0, 0)
    assert (await service.get(payment_id))["refunded"] == "30.00"
    assert await service.outbox_events(payment_id, "payment.refunded") == 1

    # the balance is right, and the payment takes its next refund at once (no hold left)
    too_much = await service.follow_up(payment_id, "refund", "70.01")
    assert too_much.status_code == 422, too_much.text
    rest = await service.follow_up(payment_id, "refund", "70.00")
    assert rest.status_code == 200, rest.text
    assert rest.json()["state"] == "refunded"


async def test_a_pending_refund_settled_at_paytabs_is_applied_by_reconciliation(
    any_service: Service, database_url: str
) -> None:
    service = any_service
    payment = await _completed(service)
    # PayTabs' callback for the refund is lost: reconciliation is what settles it
    lost_callbacks = {"callback_withhold_rate": 1}
    await service.sim_test_api(
        "PATCH", "/_sim/faults", json={"refund_pending": True, **lost_callbacks}
    )

    pending = await service.follow_up(payment["id"], "refund", "30.00")
    assert pending.status_code == 200, pending.text
    assert pending.json()["refunded"] == "0.00"
    assert pending.json()["refundable"] == "70.00"  # on its way back: not refundable again
    assert pending.json()["pending_refunds"] == "30.00"  # and the merchant can tell
    await service.sim_test_api("PUT", "/_sim/faults", json=lost_callbacks)
    [refund] = [t for t in await service.simulated(payment["id"]) if t["tran_type"] == "Refund"]
    assert refund["payment_result"]["response_status"] == "P"

    still = await reconcile_now(service, database_url)  # PayTabs has not decided yet
    assert (still["examined"], still["changed"]) == (1, 0)
    assert (await service.get(payment["id"]))["refunded"] == "0.00"

    await service.sim_test_api(
        "POST",
        f"/_sim/transactions/{refund['tran_ref']}/settle",
        json={"response_status": "A"},
    )
    report = await reconcile_now(service, database_url)
    assert (report["examined"], report["changed"]) == (1, 1)
    assert report["states"] == {"partially_refunded": 1}
    settled = await service.get(payment["id"])
    assert (settled["refunded"], settled["pending_refunds"]) == ("30.00", "0.00")
    await _assert_refunded_once(service, database_url, payment["id"])


async def test_a_refund_whose_answer_was_lost_after_the_work_is_applied_by_reconciliation(
    any_service: Service, database_url: str
) -> None:
    service = any_service
    payment = await _completed(service)
    # the refund's answer is lost, and so is PayTabs' callback for it
    lost_callbacks = {"callback_withhold_rate": 1}
    faults = {"error_rate": 1, "error_phase": "after", **lost_callbacks}
    await service.sim_test_api("PATCH", "/_sim/faults", json=faults)

    lost = await service.follow_up(payment["id"], "refund", "30.00")
    assert lost.status_code == 202, lost.text
    assert lost.json()["confirmed"] is False
    await service.sim_test_api("PUT", "/_sim/faults", json=lost_callbacks)
    [refund] = [t for t in await service.simulated(payment["id"]) if t["tran_type"] == "Refund"]
    assert refund["payment_result"]["response_status"] == "A"  # PayTabs did refund
    unsettled = await service.get(payment["id"])
    assert unsettled["refunded"] == "0.00"
    # Not refunded yet, and not refundable either: the merchant sees the refund waiting.
    assert (unsettled["pending_refunds"], unsettled["refundable"]) == ("30.00", "70.00")
    assert await _hold(service, payment["id"]) is not None

    report = await reconcile_now(service, database_url)
    assert (report["examined"], report["changed"]) == (1, 1)
    await _assert_refunded_once(service, database_url, payment["id"])
    refunds = [t for t in await service.simulated(payment["id"]) if t["tran_type"] == "Refund"]
    assert len(refunds) == 2  # the lost one and the last one: nothing was sent again


async def test_a_refund_whose_answer_was_lost_is_recorded_by_paytabs_callback(
    any_service: Service, database_url: str
) -> None:
    # Follow-ups carry the callback URL: PayTabs reports the refund it made, so the lost
    # answer needs no query, and a refund that lands after its hold was given up is still
    # recorded.
    service = any_service
    payment = await _completed(service)
    await service.sim_test_api(
        "PATCH", "/_sim/faults", json={"error_rate": 1, "error_phase": "after"}
    )
    lost = await service.follow_up(payment["id"], "refund", "30.00")
    assert lost.status_code == 202, lost.text
    await service.sim_test_api("PUT", "/_sim/faults", json={})
    await service.callbacks_done()
    settled = await service.get(payment["id"])
    assert settled["refunded"] == "30.00"
    assert await _hold(service, payment["id"]) is None
    await _assert_refunded_once(service, database_url, payment["id"])


async def test_paytabs_callback_about_a_refund_already_applied_is_a_duplicate(
    service: Service,
) -> None:
    # A full refund answered directly, then PayTabs' callback about it: a duplicate. It was
    # quarantined ("exceeds the 0.00 refundable") and logged as a security event.
    payment = await _completed(service)
    refunded = await service.follow_up(payment["id"], "refund", "100.00")
    assert refunded.status_code == 200, refunded.text
    await service.callbacks_done()
    metrics = (await service.anonymous.get("/metrics")).text
    ipn = {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('paytabs_guard_webhook_requests_total{endpoint="ipn"')
    }
    assert ipn == {"processed": 1.0, "duplicate": 1.0}  # the sale's callback, the refund's
    settled = await service.get(payment["id"])
    assert (settled["state"], settled["refunded"]) == ("refunded", "100.00")
    assert await service.outbox_events(payment["id"], "payment.refunded") == 1


async def test_process_confirms_a_pending_refund_with_paytabs(service: Service) -> None:
    payment = await _completed(service)
    await service.sim_test_api("PATCH", "/_sim/faults", json={"refund_pending": True})
    assert (await service.follow_up(payment["id"], "refund", "30.00")).status_code == 200
    [refund] = [t for t in await service.simulated(payment["id"]) if t["tran_type"] == "Refund"]
    await service.sim_test_api("POST", f"/_sim/transactions/{refund['tran_ref']}/settle", json={})

    processed = await service.api.get(f"/payments/v2/process/{payment['id']}")

    assert processed.status_code == 200, processed.text
    body = processed.json()
    assert (body["confirmed"], body["state"], body["refunded"]) == (
        True,
        "partially_refunded",
        "30.00",
    )
    assert await service.outbox_events(payment["id"], "payment.refunded") == 1


async def test_a_refund_told_to_retry_while_another_is_in_flight_runs_when_retried(
    any_service: Service,
) -> None:
    """ "Still waiting for PayTabs; retry when it is settled" is an answer of the moment: kept
    as its Idempotency-Key's answer, the retry it asks for replayed it for 24 h."""
    service = any_service
    payment = await _completed(service)
    refund = f"/payments/v2/{payment['id']}/refund"
    keys = [new_key() for _ in range(3)]
    first, *others = keys
    # PayTabs holds the first refund's answer until the others have been told (a 400 ms
    # latency was a window a loaded machine could close first).
    with held_answers(service.sim.engine, fault_paths=["/payment/request"]) as paytabs:
        leader = asyncio.create_task(
            service.api.post(refund, json={"amount": "10.00"}, headers={"Idempotency-Key": first})
        )
        # Once PayTabs has the first refund, it holds the payment until PayTabs answers.
        await paytabs.arrived()
        turned = [
            await service.api.post(refund, json={"amount": "10.00"}, headers={"Idempotency-Key": k})
            for k in others
        ]
        assert paytabs.count == 1  # the others never left
        paytabs.release()
    assert [t.status_code for t in turned] == [409, 409], [t.text for t in turned]
    assert "retry when it is settled" in turned[0].json()["detail"]
    assert (await leader).status_code == 200
    retried = await service.api.post(
        refund, json={"amount": "10.00"}, headers={"Idempotency-Key": others[0]}
    )
    assert retried.status_code == 200, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert retried.json()["refunded"] == "20.00"
    # and its answer is the key's from now on
    again = await service.api.post(
        refund, json={"amount": "10.00"}, headers={"Idempotency-Key": others[0]}
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["refunded"] == "20.00"
