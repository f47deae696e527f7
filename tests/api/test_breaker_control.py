"""POST /payments/v2/circuit-breaker/{name}/{action}: where an operator's command takes effect.

Without shared breaker state it changes the one worker process that answered, and says so;
with it (Redis, CIRCUIT_BREAKER_SHARED) every instance sharing the Redis follows, restarts too.
"""

from __future__ import annotations

import asyncio

import pytest

from paytabs_simulator.server import RunningSimulator

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
CONTROL = "/payments/v2/circuit-breaker/create/{}"


async def _create_status(service: Service) -> int:
    response = await service.api.post(
        "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
    )
    return response.status_code


async def _state(service: Service) -> str:
    stats = await service.api.get("/payments/v2/circuit-breaker/stats")
    state: str = stats.json()["breakers"]["create"]["state"]
    return state


async def _until_state(service: Service, expected: str) -> None:
    """Ask the stats until the breaker is in ``expected`` (each ask is a real round trip)."""
    async with asyncio.timeout(2):
        while await _state(service) != expected:
            pass


async def test_without_shared_state_the_answer_says_this_process_only(service: Service) -> None:
    forced = await service.admin.post(CONTROL.format("open"))
    assert forced.status_code == 200
    body = forced.json()
    assert body["breakers"]["create"]["state"] == "forced_open"  # unchanged for old clients
    assert body["applies_to"] == "this_process"
    assert "only the worker process that answered" in body["note"]
    assert "CIRCUIT_BREAKER_SHARED" in body["note"]
    assert await _create_status(service) == 503
    reset = (await service.admin.post(CONTROL.format("reset"))).json()
    assert (reset["applies_to"], reset["breakers"]["create"]["state"]) == (
        "this_process",
        "closed",
    )


async def test_with_redis_unreachable_the_answer_says_it_was_not_shared(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    async with running_service(sim, sqlite_url, env=env) as service:
        forced = await service.admin.post(CONTROL.format("open"))
        assert forced.status_code == 200
        body = forced.json()
        assert body["applies_to"] == "this_process"
        assert "Redis could not take it" in body["note"]
        assert body["breakers"]["create"]["state"] == "forced_open"
        assert await _create_status(service) == 503


@pytest.mark.redis
async def test_with_shared_state_every_instance_follows_and_restarts_keep_it(
    sim: RunningSimulator, sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    env = {"REDIS_URL": redis_url, "CIRCUIT_BREAKER_SHARED": "true"}
    async with (
        running_service(sim, sqlite_url, env=env, redis_prefix=redis_prefix) as first,
        running_service(sim, sqlite_url, env=env, redis_prefix=redis_prefix) as second,
    ):
        forced = (await first.admin.post(CONTROL.format("open"))).json()
        assert forced["applies_to"] == "every_instance"
        assert forced["breakers"]["create"]["state"] == "forced_open"
        await _until_state(second, "forced_open")
        assert await _create_status(second) == 503
        # An instance started now (or one restarted) starts forced open.
        async with running_service(
            sim, sqlite_url, env=env, redis_prefix=redis_prefix
        ) as restarted:
            assert await _state(restarted) == "forced_open"
            assert await _create_status(restarted) == 503
        # A reset sent to either instance closes it on both.
        reset = (await second.admin.post(CONTROL.format("reset"))).json()
        assert (reset["applies_to"], reset["breakers"]["create"]["state"]) == (
            "every_instance",
            "closed",
        )
        await _until_state(first, "closed")
        assert await _create_status(first) == 201
