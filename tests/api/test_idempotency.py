"""Idempotency-Key on the merchant API's writes (Stripe and IETF draft semantics)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

from paytabs_simulator.server import RunningSimulator
from testkit.held_answers import held_answers

from .api_support import API_KEY, FAST_OPTIONS, Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "25.00", "currency": "SAR", "description": "Order 7"}


async def test_the_same_key_and_body_replays_the_first_answer(service: Service) -> None:
    key = new_key()
    first = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    # The same JSON written differently is the same request.
    respaced = json.dumps(dict(reversed(list(BODY.items()))), indent=2)
    second = await service.api.post(
        "/payments/v2/create",
        content=respaced,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == f"/payments/v2/{first.json()['id']}"
    assert len(await service.simulated(first.json()["cart_id"])) == 1


async def test_the_same_key_with_another_body_is_refused(service: Service) -> None:
    key = new_key()
    await service.api.post("/payments/v2/create", json=BODY, headers={"Idempotency-Key": key})
    other = await service.api.post(
        "/payments/v2/create", json=BODY | {"amount": "26.00"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


async def test_an_amount_written_with_other_zeros_is_the_same_request(service: Service) -> None:
    # A client that re-serialises its decimal on retry ("5", "5.0", "5.00") asks for the same
    # payment; 5.01 is another one.
    key = new_key()
    first = await service.api.post(
        "/payments/v2/create", json=BODY | {"amount": "5.0"}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201
    for written in ("5.00", "5", "05.00"):
        again = await service.api.post(
            "/payments/v2/create", json=BODY | {"amount": written}, headers={"Idempotency-Key": key}
        )
        assert again.status_code == 201, (written, again.json())
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
    other = await service.api.post(
        "/payments/v2/create", json=BODY | {"amount": "5.01"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert len(await service.simulated(first.json()["cart_id"])) == 1


async def test_concurrent_creates_with_one_key_make_one_page(any_service: Service) -> None:
    # on PostgreSQL the claim travels in the statement that inserts the payment
    key = new_key()
    answers = await asyncio.gather(
        *(
            any_service.api.post("/payments/v2/create", json=BODY, headers={"Idempotency-Key": key})
            for _ in range(5)
        )
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 4
    assert len(await any_service.simulated(answers[0].json()["cart_id"])) == 1


async def test_a_key_in_flight_past_the_wait_gets_409(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    options = dataclasses.replace(FAST_OPTIONS, idempotency_wait_seconds=0.2)
    async with running_service(sim, sqlite_url, options=options) as service:
        key = new_key()
        # PayTabs holds the first create's answer until the second has outwaited the 0.2 s
        # (a latency of 1.5 s was a window a loaded machine could close first).
        with held_answers(sim.engine) as paytabs:
            first = asyncio.create_task(
                service.api.post("/payments/v2/create", json=BODY, headers={"Idempotency-Key": key})
            )
            await paytabs.arrived()  # the first request owns the key and is at PayTabs
            assert service.metric("paytabs_guard_idempotency_requests_total", outcome="new") == 1
            second = await service.api.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
            )
            paytabs.release()
        assert second.status_code == 409
        assert second.headers["retry-after"] == "1"
        assert (await first).status_code == 201


async def test_gateway_unavailable_fails_fast_and_frees_the_key(service: Service) -> None:
    opened = await service.admin.post("/payments/v2/circuit-breaker/create/open")
    assert opened.status_code == 200
    key = new_key()
    started = time.perf_counter()
    refused = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert time.perf_counter() - started < 1.0
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"

    await service.admin.post("/payments/v2/circuit-breaker/create/reset")
    retried = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers


async def test_a_low_entropy_key_is_refused(service: Service) -> None:
    short = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": "1"}
    )
    assert short.status_code == 400
    assert "UUID" in short.json()["detail"]


async def test_follow_ups_replay_too(service: Service) -> None:
    payment = await service.create("40.00")
    await service.pay(payment)
    await service.callbacks_done()
    key = new_key()
    url = f"/payments/v2/{payment['id']}/refund"
    first = await service.api.post(url, json={"amount": "10.00"}, headers={"Idempotency-Key": key})
    second = await service.api.post(url, json={"amount": "10.00"}, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert (await service.get(payment["id"]))["refunded"] == "10.00"


ROTATED_KEY = "merchant-key-rotated-9876543210"


async def test_a_retry_with_the_rotated_api_key_replays_and_never_charges_twice(
    sim: RunningSimulator, database_url: str
) -> None:
    """Both keys of a rotation (and an admin key) act for the one merchant: a merchant that
    retries a timed-out write just after switching keys must get the first answer, not a
    second payment, charge or refund."""
    env = {"API_KEYS": f"{API_KEY},{ROTATED_KEY}"}
    async with running_service(sim, database_url, env=env) as service:
        rotated = {"Authorization": f"Bearer {ROTATED_KEY}"}
        key = new_key()
        first = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
        )
        assert first.status_code == 201
        for headers in (rotated, {"Authorization": service.admin.headers["authorization"]}):
            again = await service.anonymous.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key, **headers}
            )
            assert again.status_code == 201, again.text
            assert again.json()["id"] == first.json()["id"]
            assert again.headers["idempotent-replayed"] == "true"
        assert len(await service.simulated(first.json()["cart_id"])) == 1

        await service.pay(first.json())
        await service.callbacks_done()
        refund = f"/payments/v2/{first.json()['id']}/refund"
        refund_key = new_key()
        answers = [
            await service.anonymous.post(
                refund,
                json={"amount": "4.00"},
                headers={"Idempotency-Key": refund_key, **auth},
            )
            for auth in ({"Authorization": f"Bearer {API_KEY}"}, rotated)
        ]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[1].headers["idempotent-replayed"] == "true"
        assert (await service.get(first.json()["id"]))["refunded"] == "4.00"
        # the same key sent for another request under the other key is the 422 it always was
        other = await service.anonymous.post(
            "/payments/v2/create",
            json=BODY | {"amount": "26.00"},
            headers={"Idempotency-Key": key, **rotated},
        )
        assert other.status_code == 422
