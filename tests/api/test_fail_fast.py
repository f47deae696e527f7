"""While the create circuit is open, POST /payments/v2/create answers 503 before any storage.

The idempotency claim alone is two committed writes (claim, then release for a 5xx): on SQLite
with synchronous=FULL that is milliseconds per rejected request, against the microseconds of
the breaker check. ``paytabs-guard bench chaos`` measures the fail-fast p99 (target 10 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import Table, func, select

from paytabs_guard.adapters.sql.tables import idempotency_keys, payments
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator
from testkit.held_answers import held_answers

from .api_support import FAST_OPTIONS, Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


async def _count(service: Service, table: Table) -> int:
    async with service.container.engine.connect() as connection:
        query = select(func.count()).select_from(table)
        return int((await connection.execute(query)).scalar_one())


async def test_an_open_circuit_answers_before_any_storage(service: Service) -> None:
    service.container.gateway.breakers.get("create").force_open()
    before = (await _count(service, payments), await _count(service, idempotency_keys))
    key = new_key()
    refused = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert (await _count(service, payments), await _count(service, idempotency_keys)) == before

    service.container.gateway.breakers.get("create").reset()
    retried = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert retried.status_code == 201


async def test_creates_turned_away_fast_are_counted_as_rejections(service: Service) -> None:
    """The 503 comes from asking the breaker, not calling it; it is still a call the open
    breaker turned away, and the stats an operator reads say how many."""
    service.container.gateway.breakers.get("create").force_open()
    for _ in range(3):
        refused = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        assert refused.status_code == 503
    stats = (await service.api.get("/payments/v2/circuit-breaker/stats")).json()
    create = stats["breakers"]["create"]
    assert create["window"]["rejects"] == 3
    assert create["lifetime"]["rejects"] == 3
    assert create["window"]["calls"] == 0  # a rejection is not a call


async def test_a_retry_of_a_create_that_succeeded_gets_its_answer_while_the_circuit_is_open(
    service: Service,
) -> None:
    """The merchant's retry of a create that went through (its first answer was lost on the
    way back) must hear the 201 with the page, not "nothing was sent": that would make it
    start a second payment for the same order."""
    key = new_key()
    first = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201
    service.container.gateway.breakers.get("create").force_open()
    before = (await _count(service, payments), await _count(service, idempotency_keys))
    again = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await service.api.post(
        "/payments/v2/create", json={**BODY, "amount": "13.00"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422  # another request under the key, as with a closed circuit
    fresh = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    assert fresh.status_code == 503
    assert (await _count(service, payments), await _count(service, idempotency_keys)) == before


async def _retry_while_the_first_is_in_flight(
    service: Service, latency_ms: int | None
) -> tuple[httpx.Response, httpx.Response]:
    """A create held ``latency_ms`` at PayTabs (None: until the retry is answered); while it
    is there the circuit is forced open and the merchant retries under the same key. The
    first answer, then the retry's."""
    with contextlib.ExitStack() as stack:
        if latency_ms is None:
            paytabs = stack.enter_context(held_answers(service.sim.engine))
        else:
            service.sim.engine.set_faults(Faults(latency_ms=latency_ms))
            stack.callback(service.sim.engine.set_faults, Faults())
        key = new_key()
        first = asyncio.create_task(
            service.api.post("/payments/v2/create", json=BODY, headers={"Idempotency-Key": key})
        )
        for _ in range(1000):  # until the key is claimed (bounded: 10 s)
            if await _count(service, idempotency_keys):
                break
            await asyncio.sleep(0.01)
        assert await _count(service, idempotency_keys) == 1
        service.container.gateway.breakers.get("create").force_open()
        again = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
        )
        if latency_ms is None:
            assert paytabs.count == 1  # the first was at PayTabs all along
            paytabs.release()
        answered = await first
    return answered, again


async def test_a_retry_of_a_create_still_in_flight_waits_for_its_answer_while_the_circuit_is_open(
    service: Service,
) -> None:
    """The first request is still at PayTabs when the circuit opens (an operator forced it
    open, or other creates tripped it). The merchant's retry under the same key must get what
    a retry gets with the circuit closed, the first request's answer once it comes, not a 503
    saying nothing was sent: a payment under that key is on its way to PayTabs."""
    answered, again = await _retry_while_the_first_is_in_flight(service, 600)
    assert answered.status_code == 201, answered.text
    assert again.status_code == 201, again.text
    assert again.json() == answered.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _count(service, payments) == 1


async def test_a_retry_that_outwaits_the_idempotency_wait_gets_409_not_503(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    options = replace(FAST_OPTIONS, idempotency_wait_seconds=0.2)
    async with running_service(sim, sqlite_url, options=options) as service:
        # PayTabs answers the first only once the retry has outwaited the 0.2 s (a latency of
        # 1.5 s was a window a loaded machine could close first).
        answered, again = await _retry_while_the_first_is_in_flight(service, None)
        assert again.status_code == 409, again.text
        assert again.json()["type"].endswith("idempotency-key-in-flight")
        assert again.headers["retry-after"] == "1"
        assert answered.status_code == 201, answered.text
        assert await _count(service, payments) == 1
