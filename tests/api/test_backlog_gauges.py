"""The dead-letter and undecided-payment gauges, read from a live service's /metrics over HTTP
(SQLite and PostgreSQL), with the clock moved forward instead of waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from paytabs_guard.adapters.events import CloudEvent
from paytabs_simulator.server import RunningSimulator

from .api_support import running_service
from .relay_support import drained

pytestmark = pytest.mark.anyio


def gauge(exposition: str, name: str) -> float:
    """The value of an unlabelled gauge in a Prometheus text exposition."""
    for line in exposition.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


async def test_gauges_count_dead_letters_and_age_the_oldest_undecided_payment(
    sim: RunningSimulator, database_url: str
) -> None:
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    env = {"EVENTS_MAX_ATTEMPTS": "1"}
    async with running_service(sim, database_url, env=env, clock=lambda: now[0]) as service:

        async def refuse(_event: CloudEvent) -> None:
            raise RuntimeError("the ERP is down")

        service.container.events.on("*", refuse, name="erp")
        metrics = (await service.anonymous.get("/metrics")).text
        assert gauge(metrics, "paytabs_guard_event_dead_letters") == 0
        assert gauge(metrics, "paytabs_guard_payments_undecided") == 0
        assert gauge(metrics, "paytabs_guard_payments_undecided_oldest_age_seconds") == 0

        first = await service.create()
        now[0] += timedelta(minutes=30)
        await service.create()
        now[0] += timedelta(minutes=45)
        await drained(service)  # one attempt each: every delivery dies

        metrics = (await service.anonymous.get("/metrics")).text
        dead = gauge(metrics, "paytabs_guard_event_dead_letters")
        assert dead == await service.outbox_events(first["id"]) * 2  # both payments' events
        assert gauge(metrics, "paytabs_guard_payments_undecided") == 2
        assert gauge(metrics, "paytabs_guard_payments_undecided_oldest_age_seconds") == 75 * 60

        # The oldest is paid: the age is now the other one's, and it falls to 0 with none left.
        await service.pay(first)
        await service.callbacks_done()
        assert (await service.get(first["id"]))["state"] == "completed"
        metrics = (await service.anonymous.get("/metrics")).text
        assert gauge(metrics, "paytabs_guard_payments_undecided") == 1
        assert gauge(metrics, "paytabs_guard_payments_undecided_oldest_age_seconds") == 45 * 60
