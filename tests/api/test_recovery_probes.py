"""The whole recovery loop over real HTTP: PayTabs goes down, the create breaker opens, the
service's prober probes (and says so in the stats and the metrics), PayTabs comes back, a probe
notices and the breaker closes after real trials — long before the 30 s reset timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from paytabs_simulator.server import RunningSimulator

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
FAST_PROBES = {
    "CIRCUIT_BREAKER_PROBE_INTERVAL": "50",
    "CIRCUIT_BREAKER_VOLUME_THRESHOLD": "3",
    "PAYTABS_RETRY_ATTEMPTS": "0",
}


async def create_breaker(service: Service) -> dict[str, Any]:
    stats = (await service.api.get("/payments/v2/circuit-breaker/stats")).json()
    breaker: dict[str, Any] = stats["breakers"]["create"]
    return breaker


async def until_breaker(service: Service, check: Any, within: float = 10.0) -> dict[str, Any]:
    """Ask the stats endpoint until ``check(breaker)`` holds (bounded)."""
    async with asyncio.timeout(within):
        while True:
            breaker = await create_breaker(service)
            if check(breaker):
                return breaker
            await asyncio.sleep(0.02)


async def set_faults(sim: RunningSimulator, faults: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        (await client.put("/_sim/faults", json=faults)).raise_for_status()


async def open_by_an_outage(service: Service, sim: RunningSimulator) -> None:
    """PayTabs goes down, and creates fail until the create breaker opens."""
    await set_faults(sim, {"down": True})
    for _ in range(10):
        await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        if (await create_breaker(service))["state"] == "open":
            break
    assert (await create_breaker(service))["state"] == "open"


QUIET_PACE = FAST_PROBES | {
    "CIRCUIT_BREAKER_PROBE_INTERVAL": "4000",  # 3-5 s with nobody waiting
    "CIRCUIT_BREAKER_MIN_OPEN_TIME": "20000",  # the open period's own trial is far off
}


async def test_a_probe_brings_the_breaker_back_long_before_the_reset_timeout(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with running_service(sim, sqlite_url, env=FAST_PROBES) as service:
        await set_faults(sim, {"down": True})
        for _ in range(10):
            answer = await service.api.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
            )
            assert answer.status_code == 503
            if (await create_breaker(service))["state"] == "open":
                break
        assert (await create_breaker(service))["state"] == "open"
        down = await until_breaker(service, lambda b: b["probes"]["failed"] >= 2)
        assert down["state"] == "open"  # probes that get no answer change nothing
        assert down["window"]["calls"] <= 3 + 1  # probes are not in the error-rate window

        loop = asyncio.get_running_loop()
        recovered_at = loop.time()
        await set_faults(sim, {})
        after = await until_breaker(service, lambda b: b["state"] != "open")
        assert loop.time() - recovered_at < 5.0  # the reset timeout is 30 s
        assert after["probes"]["last_result"] == "succeeded"
        for _ in range(5):  # real trials close it on evidence
            created = await service.api.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
            )
            assert created.status_code == 201, created.text
            if (await create_breaker(service))["state"] == "closed":
                break
        assert (await create_breaker(service))["state"] == "closed"
        metrics = (await service.anonymous.get("/metrics")).text
        assert (
            'paytabs_guard_circuit_breaker_probes_total{breaker="create",result="succeeded"}'
            in metrics
        )
        assert 'result="failed"' in metrics


async def test_a_gateway_that_comes_back_slow_is_found_by_its_probes(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """PayTabs answering in 1.2 s is up: every real call (30 s call timeout) would succeed.
    A probe must be allowed what a real call is allowed, or a slow recovery keeps the breaker
    open, turning away every sale, until the reset timeout (30 s)."""
    async with running_service(sim, sqlite_url, env=FAST_PROBES) as service:
        await open_by_an_outage(service, sim)
        await set_faults(sim, {"latency_ms": 1200})
        after = await until_breaker(service, lambda b: b["state"] != "open")
        assert after["probes"]["last_result"] == "succeeded"


async def test_a_foreign_4xx_in_front_of_paytabs_is_no_answer_to_a_probe(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """A WAF or maintenance page answering 403 in HTML is not PayTabs answering: the probes
    must not bring the breaker back for it (trials would then "succeed" on it too, and every
    create be refused as if PayTabs had declined it)."""
    async with running_service(sim, sqlite_url, env=FAST_PROBES) as service:
        await open_by_an_outage(service, sim)
        await set_faults(sim, {"down": True, "down_status": 403})
        failed = (await create_breaker(service))["probes"]["failed"]
        down = await until_breaker(
            service, lambda b: b["probes"]["failed"] >= failed + 3 or b["state"] != "open"
        )
        assert down["state"] == "open", down
        assert down["probes"]["last_result"] == "failed"
        assert down["probes"]["succeeded"] == 0
        refused = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        assert refused.status_code == 503, refused.text  # turned away, not "refused by PayTabs"

        # PayTabs itself back: its answers bring the breaker back as before.
        await set_faults(sim, {})
        after = await until_breaker(service, lambda b: b["state"] != "open")
        assert after["probes"]["last_result"] == "succeeded"


async def test_a_sale_turned_away_hurries_the_probe_and_is_told_of_it(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """With nobody waiting a probe goes every 3-5 s here; a create turned away brings the next
    one to a quarter of that after the last, is told to come back when its answer is in, and
    the recovery is found that much sooner."""
    # Without the return line: the breaker's wait, without a place in line.
    env = QUIET_PACE | {"CIRCUIT_BREAKER_RETURN_RATE": "0"}
    async with running_service(sim, sqlite_url, env=env) as service:
        loop = asyncio.get_running_loop()
        await open_by_an_outage(service, sim)
        opened_at = loop.time()
        await set_faults(sim, {})  # PayTabs is back; only a probe can tell
        refused = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        assert refused.status_code == 503
        # A quarter of at most 5 s, plus the answer time assumed before any probe (0.3 s) and
        # the spread of the precise wait (at most 250 ms): never the 3-5 s of the quiet pace.
        assert refused.json()["retry_after_ms"] <= 1250 + 300 + 250
        # The quiet pace could not have probed before 3 s had passed since the opening.
        await until_breaker(service, lambda b: b["state"] != "open", within=2.9)
        assert loop.time() - opened_at < 3.0


async def test_a_held_sale_hurries_the_probe_that_lets_it_through(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """A create held for ``Prefer: wait`` is never rejected, and still brings the next probe
    forward: it goes through well before the quiet pace (3-5 s here) could have probed."""
    async with running_service(sim, sqlite_url, env=QUIET_PACE) as service:
        loop = asyncio.get_running_loop()
        await open_by_an_outage(service, sim)
        opened_at = loop.time()
        await set_faults(sim, {})  # PayTabs is back; only a probe can tell
        held = await service.api.post(
            "/payments/v2/create",
            json=BODY,
            headers={"Idempotency-Key": new_key(), "Prefer": "wait=10"},
        )
        assert held.status_code == 201, held.text
        assert held.headers["preference-applied"] == "wait=10"
        assert loop.time() - opened_at < 3.0
