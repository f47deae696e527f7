"""``paytabs_guard_circuit_breaker_state`` says what the breaker would do now, at every scrape.

A breaker has no timer task: its open period ends when someone looks (a call, the stats, a
health check, the prober). With probes off (``CIRCUIT_BREAKER_PROBE_INTERVAL=0``) and nobody
calling, nothing looked, and ``/metrics`` said ``open`` long after the breaker would let its
trial through: in a quiet night after an outage the ``PayTabsBreakerOpen`` alert fired on and
on, while ``/health/circuit-breakers`` and the stats said ``half_open``. Real HTTP, the real
simulator, the breakers on a ManualClock.
"""

from __future__ import annotations

import pytest

from paytabs_guard.resilience import ManualClock
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
ENV = {
    "PAYTABS_RETRY_ATTEMPTS": "0",
    "CIRCUIT_BREAKER_PROBE_INTERVAL": "0",
    "CIRCUIT_BREAKER_MIN_OPEN_TIME": "2000",
    "CIRCUIT_BREAKER_RESET_TIMEOUT": "30000",
}


def gauge(metrics: str, breaker: str) -> list[str]:
    """The states the state gauge sets to 1 for ``breaker``."""
    prefix = f'paytabs_guard_circuit_breaker_state{{breaker="{breaker}",state="'
    return [
        line[len(prefix) :].split('"', 1)[0]
        for line in metrics.splitlines()
        if line.startswith(prefix) and line.endswith(" 1.0")
    ]


async def _trip_create(service: Service, sim: RunningSimulator) -> None:
    sim.engine.set_faults(Faults(down=True))
    try:
        for _ in range(5):  # CIRCUIT_BREAKER_VOLUME_THRESHOLD failures: the rate reaches 100 %
            response = await service.api.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
            )
            assert response.status_code == 503
    finally:
        sim.engine.set_faults(Faults())


async def test_the_state_gauge_turns_half_open_when_the_open_period_ends(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    clock = ManualClock()
    async with running_service(sim, sqlite_url, env=ENV, monotonic=clock) as service:
        await _trip_create(service, sim)
        assert gauge((await service.anonymous.get("/metrics")).text, "create") == ["open"]
        clock.advance(2.5)  # past the first open period (2 s, at most +20 %)
        # Nobody calls and nothing else looks: the scrape alone must tell the truth.
        assert gauge((await service.anonymous.get("/metrics")).text, "create") == ["half_open"]
        health = (await service.anonymous.get("/health/circuit-breakers")).json()
        states = {
            c["componentId"]: c["observedValue"] for c in health["checks"]["circuitBreaker:state"]
        }
        assert states["create"] == "half_open"
