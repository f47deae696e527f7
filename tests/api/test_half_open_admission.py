"""Half-open under a crowd: a create the breaker turns away is turned away before it stores
anything, even when many creates arrive at once while only a few trial slots are free.

Found by review: every create of a crowd arriving at a half-open breaker passed the early check
(slots were free at the moment of asking), then stored its payment and its events, and only the
first ``half_open_max_calls`` got a trial slot inside the breaker; the rest answered 503 ("nothing
is stored") with a failed payment and two events behind them. The early check now takes the
trial slot, and the PayTabs call uses it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, func, select

from paytabs_guard.adapters.sql.tables import idempotency_keys, outbox, payments
from paytabs_simulator.server import RunningSimulator
from testkit.held_answers import WAIT, held_answers

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
ENV = {
    "CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS": "3",
    "CIRCUIT_BREAKER_VOLUME_THRESHOLD": "3",
    "CIRCUIT_BREAKER_PROBE_INTERVAL": "0",  # the test says when a probe answered
    "PAYTABS_RETRY_ATTEMPTS": "0",
}
CROWD = 30


async def _count(service: Service, table: Table) -> int:
    async with service.container.engine.connect() as connection:
        query = select(func.count()).select_from(table)
        return int((await connection.execute(query)).scalar_one())


async def _set_faults(sim: RunningSimulator, faults: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        (await client.put("/_sim/faults", json=faults)).raise_for_status()


async def _stored(service: Service) -> tuple[int, int, int]:
    return (
        await _count(service, payments),
        await _count(service, outbox),
        await _count(service, idempotency_keys),
    )


async def _until_answered(requests: list[asyncio.Task[httpx.Response]], count: int) -> None:
    """Wait (bounded) until ``count`` of the ``requests`` have their answers."""
    async with asyncio.timeout(WAIT):
        while sum(request.done() for request in requests) < count:
            pending = [request for request in requests if not request.done()]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


async def _trip_then_half_open(service: Service, sim: RunningSimulator) -> None:
    breaker = service.container.gateway.breakers.get("create")
    await _set_faults(sim, {"down": True})
    for _ in range(10):
        await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        if breaker.state == "open":
            break
    assert breaker.state == "open"
    await _set_faults(sim, {})
    breaker.record_probe(succeeded=True, latency=0.01)
    assert breaker.state == "half_open"


async def test_a_create_that_never_calls_paytabs_gives_its_trial_slot_back(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """A replay is answered from the stored response: the slot it took goes to the next."""
    env = ENV | {"CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS": "1"}
    async with running_service(sim, sqlite_url, env=env) as service:
        key = new_key()
        first = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
        )
        assert first.status_code == 201
        await _trip_then_half_open(service, sim)
        replayed = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
        )
        assert replayed.status_code == 201
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.json()["id"] == first.json()["id"]
        created = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        assert created.status_code == 201, created.text  # the one slot was free again
        assert service.container.gateway.breakers.get("create").state == "closed"


@pytest.mark.parametrize("return_rate", ["50", "0"], ids=["in-turns", "all-at-once"])
async def test_a_crowd_at_a_half_open_breaker_stores_only_what_gets_a_trial(
    sim: RunningSimulator, sqlite_url: str, return_rate: str
) -> None:
    env = ENV | {"CIRCUIT_BREAKER_RETURN_RATE": return_rate}
    async with running_service(sim, sqlite_url, env=env) as service:
        breaker = service.container.gateway.breakers.get("create")
        await _trip_then_half_open(service, sim)
        before = await _stored(service)
        # PayTabs is back, slowly: the trials hold their slots while the crowd arrives. It
        # answers them once the rest are turned away (a latency of 1 s was a window a loaded
        # machine could close before the whole crowd had arrived).
        with held_answers(sim.engine) as paytabs:
            crowd = [
                asyncio.create_task(
                    service.api.post(
                        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
                    )
                )
                for _ in range(CROWD)
            ]
            await _until_answered(crowd, CROWD - 3)
            await paytabs.arrived(3)
            assert paytabs.count == 3  # the trials, and nobody else, at PayTabs
            paytabs.release()
            answers = await asyncio.gather(*crowd)

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201] * 3 + [503] * (CROWD - 3), [a.text for a in answers]
        created = [answer.json()["id"] for answer in answers if answer.status_code == 201]
        events_of_created = sum([await service.outbox_events(pid) for pid in created])
        payments_after, outbox_after, keys_after = await _stored(service)
        # The 27 turned away stored nothing: no payment, no event, no idempotency key.
        assert payments_after - before[0] == 3
        assert outbox_after - before[1] == events_of_created
        assert keys_after - before[2] == 3
        assert all(
            answer.json()["type"].endswith("gateway-unavailable")
            for answer in answers
            if answer.status_code == 503
        )
        assert breaker.state == "closed"  # the three trials succeeded
        assert breaker.snapshot().lifetime.rejects >= CROWD - 3
