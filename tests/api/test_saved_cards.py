"""Saved cards and recurring charges over real HTTP against the simulator (SQLite, PostgreSQL):
save on a hosted-page payment, list, charge without a page, delete, and the rules around them
(one charge per Idempotency-Key, an ambiguous answer resolved without a second charge, the token
never shown nor logged)."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator
from testkit.held_answers import held_answers

from .api_support import Service, new_key, reconcile_now, running_service

pytestmark = pytest.mark.anyio


async def save_card(service: Service, customer_id: str = "cust_1001") -> Any:
    """A completed payment that saved its card; returns the payment."""
    payment = await service.create("50.00", save_card=True, customer_id=customer_id)
    assert payment["saved_card_id"] is not None
    await service.pay(payment)
    await service.callbacks_done()
    paid = await service.get(payment["id"])
    assert paid["state"] == "completed"
    return paid


async def charge(
    service: Service, card_id: str, amount: str = "20.00", key: str | None = None
) -> httpx.Response:
    body = {
        "saved_card_id": card_id,
        "amount": amount,
        "currency": "SAR",
        "description": "Membership, March",
    }
    headers = {"Idempotency-Key": key or new_key()}
    return await service.api.post("/payments/v2/recurring", json=body, headers=headers)


async def paytabs_token(service: Service, cart_id: str) -> str:
    """The token PayTabs issued, as the simulator holds it (to look for it where it must not be)."""
    [transaction] = await service.simulated(cart_id)
    token = transaction["token"]
    assert isinstance(token, str)
    assert len(token) > 8
    return token


async def test_save_list_charge_delete_then_charging_is_refused(
    any_service: Service, captured: io.StringIO
) -> None:
    service = any_service
    paid = await save_card(service)
    card_id = paid["saved_card_id"]
    token = await paytabs_token(service, paid["cart_id"])

    listed = await service.api.get("/payments/v2/customers/cust_1001/cards")
    assert listed.status_code == 200, listed.text
    [card] = listed.json()["data"]
    assert card["id"] == card_id
    assert card["payment_id"] == paid["id"]
    assert (card["last_four"], card["masked"]) == ("1111", "**** 1111")
    assert card["card_scheme"] == "Visa"
    assert 1 <= card["expiry_month"] <= 12
    assert card["expiry_year"] >= 2026
    other = await service.api.get("/payments/v2/customers/cust_2002/cards")
    assert other.json()["data"] == []

    charged = await charge(service, card_id)
    assert charged.status_code == 201, charged.text
    payment = charged.json()
    assert payment["state"] == "completed"
    assert payment["saved_card_id"] == card_id
    assert payment["redirect_url"] is None
    assert payment["amount"] == "20.00"
    [sale] = await service.simulated(payment["cart_id"])
    assert (sale["tran_class"], sale["tran_type"]) == ("Recurring", "Sale")
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "completed"
    # the same events as any payment: created, initiated, completed
    assert await service.outbox_events(payment["id"], "payment.completed") == 1
    assert await service.outbox_events(payment["id"], "payment.created") == 1

    deleted = await service.api.delete(f"/payments/v2/cards/{card_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted_at"] is not None
    again = await service.api.delete(f"/payments/v2/cards/{card_id}")
    assert again.status_code == 200
    assert again.json()["deleted_at"] == deleted.json()["deleted_at"]
    # deleted at PayTabs too: the simulator refuses the token now
    assert service.sim.engine.tokens[token].deleted
    listed_after = await service.api.get("/payments/v2/customers/cust_1001/cards")
    assert listed_after.json()["data"] == []

    refused = await charge(service, card_id)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/saved-card-deleted")
    assert "deleted" in problem["detail"]
    unknown = await charge(service, "card_000000000000000000000000")
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("/saved-card-not-found")
    assert (await service.api.delete("/payments/v2/cards/card_nope")).status_code == 404

    # The token is nowhere in what the API said or logged.
    for response in (listed, charged, deleted, again, refused):
        assert token not in response.text
    assert token not in (await service.api.get(f"/payments/v2/{paid['id']}")).text
    logs = captured.getvalue()
    assert logs  # the requests above were logged
    assert token not in logs


async def test_a_saved_card_past_its_expiry_is_declined_and_says_why(
    any_service: Service,
) -> None:
    # The card saved last year has expired since: PayTabs (the issuer) declines the charge.
    # Nothing is charged; the answer says why and what to do, the payment keeps the reason,
    # and the card stays listed (a card renewed with the same number can be charged again).
    service = any_service
    paid = await save_card(service)
    card_id = paid["saved_card_id"]
    token = await paytabs_token(service, paid["cart_id"])
    stored = service.sim.engine.tokens[token]
    today = service.sim.engine.now()
    stored.card = replace(stored.card, expiry_month=today.month, expiry_year=today.year - 1)

    charged = await charge(service, card_id)
    assert charged.status_code == 422, charged.text
    assert charged.headers["content-type"] == "application/problem+json"
    problem = charged.json()
    declined = {
        "code": "54",
        "message": "Expired card",
        "decline_category": "expired_card",
        "status": "D",
    }
    assert problem["last_payment_error"] == declined
    assert "did not approve the charge: Expired card" in problem["detail"]
    assert "expired_card" in problem["detail"]
    assert "fix the request" not in problem["detail"]  # nothing in it to fix
    payment = await service.get(problem["payment_id"])
    assert payment["state"] == "failed"
    assert payment["last_payment_error"] == declined
    assert await service.outbox_events(payment["id"], "payment.completed") == 0
    [sale] = await service.simulated(payment["cart_id"])
    assert sale["payment_result"]["response_status"] == "D"
    listed = await service.api.get("/payments/v2/customers/cust_1001/cards")
    assert [card["id"] for card in listed.json()["data"]] == [card_id]


async def test_a_recurring_charge_retried_with_its_key_is_one_transaction(
    any_service: Service,
) -> None:
    service = any_service
    card_id = (await save_card(service))["saved_card_id"]
    key = new_key()
    first = await charge(service, card_id, key=key)
    second = await charge(service, card_id, key=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(await service.simulated(first.json()["cart_id"])) == 1
    # a different body under the same key is refused, not charged
    other = await charge(service, card_id, amount="21.00", key=key)
    assert other.status_code == 422, other.text
    await service.callbacks_done()
    assert len(await service.simulated(first.json()["cart_id"])) == 1


@pytest.mark.parametrize("status", [502, 503, 429])
async def test_a_lost_answer_after_the_charge_is_resolved_without_a_second_charge(
    any_service: Service, status: int
) -> None:
    """Whatever the answer says, 503 and 429 included ("usually not processed"): the charge
    PayTabs made is found, never reported as not sent for the merchant to make again."""
    service = any_service
    card_id = (await save_card(service))["saved_card_id"]
    # PayTabs records the charge, then answers with an error; queries still work.
    service.sim.engine.set_faults(
        Faults(
            error_rate=1.0,
            error_statuses=[status],
            error_phase="after",
            fault_paths=["/payment/request"],
        )
    )
    response = await charge(service, card_id)
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "completed"
    await service.callbacks_done()
    [sale] = await service.simulated(response.json()["cart_id"])
    assert sale["payment_result"]["response_status"] == "A"
    assert (await service.get(response.json()["id"]))["state"] == "completed"


async def test_a_card_can_be_charged_only_once_its_payment_completed(service: Service) -> None:
    payment = await service.create("50.00", save_card=True, customer_id="cust_3003")
    early = await charge(service, payment["saved_card_id"])
    assert early.status_code == 409
    assert early.json()["type"].endswith("/saved-card-not-ready")
    # nothing was listed, stored or sent
    assert (await service.api.get("/payments/v2/customers/cust_3003/cards")).json()["data"] == []
    # a declined payment never saves its card
    await service.pay(payment, card="4000000000000010")
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "failed"
    never = await charge(service, payment["saved_card_id"])
    assert never.status_code == 409
    # not "charge it once that payment is completed": it never will be
    assert never.json()["type"].endswith("/saved-card-never-saved")
    assert "ended failed" in never.json()["detail"]


async def test_with_the_breaker_open_a_deleted_card_is_refused_as_deleted_not_told_to_wait(
    service: Service,
) -> None:
    paid = await save_card(service, customer_id="cust_4004")
    card_id = paid["saved_card_id"]
    assert (await service.api.delete(f"/payments/v2/cards/{card_id}")).status_code == 200
    breaker = service.container.gateway.breakers.get("token")
    breaker.force_open()
    refused = await charge(service, card_id)
    assert refused.status_code == 409, refused.text  # "retry later" would be a lie
    assert refused.json()["type"].endswith("/saved-card-deleted")
    assert (await charge(service, "card_000000000000000000000000")).status_code == 404
    paid_again = await save_card(service, customer_id="cust_4005")  # the create breaker
    waiting = await charge(service, paid_again["saved_card_id"])
    assert waiting.status_code == 503  # a good card, a closed door: come back later
    # Deleting while PayTabs cannot be reached: disabled here at once, finished by a repeat.
    half = await service.api.delete(f"/payments/v2/cards/{paid_again['saved_card_id']}")
    assert half.status_code == 503
    assert "Idempotency-Key" not in half.json()["detail"]
    assert "send this DELETE again" in half.json()["detail"]
    assert int(half.headers["retry-after"]) >= 1
    # the precise wait, as in every 503 of the breaker, never later than the header's
    precise = half.json()["retry_after_ms"]
    assert 0 <= precise <= int(half.headers["retry-after"]) * 1000
    gone = await charge(service, paid_again["saved_card_id"])
    assert gone.json()["type"].endswith("/saved-card-deleted")
    breaker.reset()
    finished = await service.api.delete(f"/payments/v2/cards/{paid_again['saved_card_id']}")
    assert finished.status_code == 200


async def test_a_key_turned_away_then_refused_for_its_card_leaves_the_return_line(
    service: Service,
) -> None:
    # Turned away (503), a charge's key takes a place in the line of creates that come back
    # in turns; refused for good on its retry (the card deleted meanwhile) it leaves it, held
    # for Prefer: wait or not, and takes no place ahead of others.
    paid = await save_card(service, customer_id="cust_4007")
    card_id = paid["saved_card_id"]
    service.container.gateway.breakers.get("token").force_open()
    key = new_key()
    assert (await charge(service, card_id, key=key)).status_code == 503
    pace = service.app.state.runtime.pace
    assert len(pace) == 1
    assert (await service.api.delete(f"/payments/v2/cards/{card_id}")).status_code == 503
    body = {"amount": "20.00", "currency": "SAR", "description": "Membership, March"}
    refused = await service.api.post(
        "/payments/v2/recurring",
        json={**body, "saved_card_id": card_id},
        headers={"Idempotency-Key": key, "Prefer": "wait=60"},
    )
    assert refused.status_code == 409, refused.text
    assert len(pace) == 0


async def test_a_payment_without_save_card_gets_no_token(service: Service) -> None:
    payment = await service.create("50.00")
    assert payment["saved_card_id"] is None
    await service.pay(payment)
    await service.callbacks_done()
    [transaction] = await service.simulated(payment["cart_id"])
    assert "token" not in transaction


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"save_card": True}, "customer_id"),
        ({"customer_id": "cust_1"}, "customer_id"),
        ({"save_card": True, "customer_id": "no spaces allowed"}, "customer_id"),
        ({"save_card": "yes", "customer_id": "cust_1"}, "save_card"),
    ],
)
async def test_save_card_needs_a_valid_customer_id(
    service: Service, extra: dict[str, Any], field: str
) -> None:
    body = {"amount": "10.00", "currency": "SAR", "description": "Order", **extra}
    response = await service.api.post(
        "/payments/v2/create", json=body, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "10.00", "currency": "SAR", "description": "x"},
        {"saved_card_id": "card_1", "amount": 10, "currency": "SAR", "description": "x"},
        {"saved_card_id": "card_1", "amount": "10.00", "currency": "SAR", "description": "x",
         "token": "abc"},
        {"saved_card_id": "../etc", "amount": "10.00", "currency": "SAR", "description": "x"},
    ],
)  # fmt: skip
async def test_recurring_bodies_are_strict(service: Service, body: dict[str, Any]) -> None:
    response = await service.api.post(
        "/payments/v2/recurring", json=body, headers={"Idempotency-Key": new_key()}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_bad_customer_id_in_the_path_is_a_problem(service: Service) -> None:
    response = await service.api.get("/payments/v2/customers/bad%20id/cards")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_unclear_charge_is_settled_from_paytabs_records_without_resending(
    any_service: Service,
) -> None:
    service = any_service
    card_id = (await save_card(service))["saved_card_id"]
    # The charge is recorded but its answer is lost, and the query to resolve it fails too.
    service.sim.engine.set_faults(Faults(error_rate=1.0, error_statuses=[502], error_phase="after"))
    response = await charge(service, card_id)
    assert response.status_code == 202, response.text
    payment = response.json()
    assert payment["state"] == "unknown"
    service.sim.engine.set_faults(Faults())
    await service.callbacks_done()
    processed = await service.api.get(f"/payments/v2/process/{payment['id']}")
    assert processed.json()["state"] == "completed", processed.text
    [sale] = await service.simulated(payment["cart_id"])  # one charge, never re-sent
    assert sale["tran_class"] == "Recurring"


async def test_a_charge_paytabs_shows_nothing_for_yet_is_not_failed_while_it_may_still_land(
    service: Service,
) -> None:
    # The charge never reached PayTabs and its answer was unclear: the first /process finds
    # nothing. "failed" there told the merchant to charge again while the first request could
    # still land, and the customer was charged twice.
    card_id = (await save_card(service))["saved_card_id"]
    service.sim.engine.set_faults(
        Faults(error_rate=1.0, error_statuses=[502], error_phase="before")
    )
    response = await charge(service, card_id)
    assert response.status_code == 202, response.text
    payment = response.json()
    service.sim.engine.set_faults(Faults())
    processed = (await service.api.get(f"/payments/v2/process/{payment['id']}")).json()
    assert processed["state"] == "unknown"
    assert processed["confirmed"] is False
    assert "may still reach PayTabs" in processed["reason"]
    assert 0 < processed["retry_after_ms"] <= 90_000 + 1000
    assert await service.simulated(payment["cart_id"]) == []


async def test_process_never_says_retry_in_0_ms_while_it_still_waits(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # Asked again within the per-payment query gate after the wait ended, /process answered
    # from the stored state, still unconfirmed, "retry in 0 ms": a client polled in a loop.
    now = [datetime.now(UTC)]
    async with running_service(sim, sqlite_url, clock=lambda: now[0]) as service:
        card_id = (await save_card(service))["saved_card_id"]
        sim.engine.set_faults(Faults(error_rate=1.0, error_statuses=[502], error_phase="before"))
        payment = (await charge(service, card_id)).json()
        sim.engine.set_faults(Faults())
        url = f"/payments/v2/process/{payment['id']}"
        first = (await service.api.get(url)).json()
        assert (first["state"], first["confirmed"]) == ("unknown", False)
        now[0] += timedelta(milliseconds=first["retry_after_ms"] + 1000)
        second = (await service.api.get(url)).json()  # inside the gate: the stored state
        assert (second["state"], second["confirmed"]) == ("unknown", False)
        assert second["retry_after_ms"] > 0


async def test_a_card_deleted_while_its_charge_is_on_its_way_is_a_409_not_a_refusal(
    any_service: Service,
) -> None:
    """The charge read the card before the DELETE committed and reached PayTabs after the
    token was deleted there: PayTabs refused the token, and the merchant heard a 422 "fix the
    request" that reads as a declined card."""
    service = any_service
    card_id = (await save_card(service, customer_id="cust_6006"))["saved_card_id"]
    engine = service.sim.engine
    # PayTabs holds the charge until the DELETE (a commit and PayTabs' token delete) has
    # landed: a latency (400 ms, then 3 s) was a window a loaded CI machine could close first.
    with held_answers(engine, fault_paths=["/payment/request"]) as paytabs:
        charging = asyncio.create_task(charge(service, card_id, key=new_key()))
        await paytabs.arrived()
        deleted = await service.api.delete(f"/payments/v2/cards/{card_id}")
        assert deleted.status_code == 200, deleted.text
        paytabs.release()
    answer = await charging
    assert answer.status_code == 409, answer.text
    problem = answer.json()
    assert problem["type"].endswith("/saved-card-deleted")
    approved = [t for t in engine.transactions.values() if t.status == "A"]
    assert len(approved) == 1  # the saving payment's sale alone: nothing was charged
    # The charge did go out (PayTabs refused the token): the answer says so and names the
    # failed payment it is kept as, whose events the merchant receives.
    assert "on its way" in problem["detail"]
    kept = await service.get(problem["payment_id"])
    assert kept["state"] == "failed"
    assert kept["saved_card_id"] == card_id


async def _deleted_before_paid(service: Service) -> str:
    """A card deleted while its payment was unpaid, then paid: the token PayTabs issued."""
    payment = await service.create("50.00", save_card=True, customer_id="cust_1001")
    card_id = payment["saved_card_id"]
    deleted = await service.api.delete(f"/payments/v2/cards/{card_id}")
    assert deleted.status_code == 200, deleted.text
    await service.pay(payment)
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "completed"
    assert (await charge(service, card_id)).status_code == 409  # never chargeable
    return await paytabs_token(service, payment["cart_id"])


async def test_a_card_deleted_before_its_payment_was_paid_has_its_token_deleted_at_paytabs(
    any_service: Service, database_url: str
) -> None:
    """PayTabs issues the token when the page is paid, which may be after the merchant deleted
    the card: the token is kept only until reconciliation deletes it at PayTabs too. Two
    passes at once count each token once."""
    service = any_service
    tokens = [await _deleted_before_paid(service) for _ in range(3)]
    assert not any(service.sim.engine.tokens[t].deleted for t in tokens)

    reports = await asyncio.gather(*(reconcile_now(service, database_url) for _ in range(2)))
    assert sum(int(str(r["tokens_deleted"])) for r in reports) == 3
    assert all(service.sim.engine.tokens[t].deleted for t in tokens)
    again = await reconcile_now(service, database_url)
    assert again["tokens_deleted"] == 0  # and our copies are gone


async def test_a_left_token_paytabs_cannot_delete_yet_is_reported_and_deleted_later(
    any_service: Service, database_url: str
) -> None:
    service = any_service
    token = await _deleted_before_paid(service)
    service.sim.engine.set_faults(
        Faults(error_rate=1.0, error_statuses=[500], fault_paths=["/payment/token/delete"])
    )
    failed = await reconcile_now(service, database_url)
    assert (failed["tokens_deleted"], failed["unreachable"]) == (0, 1)
    assert not service.sim.engine.tokens[token].deleted
    service.sim.engine.set_faults(Faults())
    later = await reconcile_now(service, database_url)
    assert (later["tokens_deleted"], later["unreachable"]) == (1, 0)
    assert service.sim.engine.tokens[token].deleted


@pytest.mark.parametrize("card", ["4000000000000044", "4000000000000036"])  # pending, on hold
async def test_a_card_whose_payment_settles_later_becomes_chargeable(
    any_service: Service, card: str
) -> None:
    """PayTabs issues the token with the payment's first authorised result, which for a
    pending or held payment comes later, in its callback: the card is chargeable from then."""
    service = any_service
    payment = await service.create("50.00", save_card=True, customer_id="cust_late")
    await service.pay(payment, card=card)
    await service.callbacks_done()
    assert (await charge(service, payment["saved_card_id"])).status_code == 409  # not yet
    [sale] = await service.simulated(payment["cart_id"])
    async with httpx.AsyncClient(base_url=service.sim.base_url) as admin:
        settled = await admin.post(
            f"/_sim/transactions/{sale['tran_ref']}/settle", json={"response_status": "A"}
        )
    assert settled.status_code == 200, settled.text
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "completed"
    listed = await service.api.get("/payments/v2/customers/cust_late/cards")
    assert [c["id"] for c in listed.json()["data"]] == [payment["saved_card_id"]]
    charged = await charge(service, payment["saved_card_id"])
    assert charged.status_code == 201, charged.text
    assert charged.json()["state"] == "completed"


async def test_a_delete_whose_answer_is_lost_says_to_delete_again(any_service: Service) -> None:
    """Not the payments' "GET the payment in a minute; resend with the same Idempotency-Key":
    a DELETE has neither. The card is unusable at once, and a second DELETE finishes."""
    service = any_service
    card_id = (await save_card(service))["saved_card_id"]
    service.sim.engine.set_faults(
        Faults(reset_rate=1.0, reset_phase="after", fault_paths=["/payment/token/delete"])
    )
    lost = await service.api.delete(f"/payments/v2/cards/{card_id}")
    assert lost.status_code == 502, lost.text
    assert "send this DELETE again" in lost.json()["detail"]
    assert "Idempotency-Key" not in lost.json()["detail"]
    assert (await charge(service, card_id)).status_code == 409
    service.sim.engine.set_faults(Faults())
    assert (await service.api.delete(f"/payments/v2/cards/{card_id}")).status_code == 200
