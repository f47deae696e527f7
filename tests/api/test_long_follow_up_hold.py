"""A follow-up still on its way to PayTabs keeps its hold, however long the operation deadline.

A hold went stale after a fixed 15 minutes (``HOLD_STALE_AFTER``), which its docstring called
"far longer than any request may take". With ``PAYTABS_OPERATION_DEADLINE`` +
``CIRCUIT_BREAKER_TIMEOUT`` over 15 minutes (both may be set up to a day), a capture still
being retried lost its hold at minute 15: a second capture went out beside it, PayTabs took
both, and the payment, allowed one capture, quarantined one of them as a conflict. A hold now
stays fresh for the longest write too, and is dropped after a query only once its request can
no longer reach PayTabs (the send window, whatever its length).

The first capture is kept in flight by a simulator that holds its answer until the test lets it
go (a latency of 2.5 s is a window a loaded machine can outlast before the test is done); the 16
minutes pass on an injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from paytabs_simulator.server import RunningSimulator
from testkit.clock import FakeClock
from testkit.held_answers import held_answers

from .api_support import Service, running_service

pytestmark = pytest.mark.anyio

LONG_DEADLINE = {
    "PAYTABS_OPERATION_DEADLINE": str(20 * 60 * 1000),  # 20 minutes: a patient operator
    # The default call timeout: a held capture is not cut off while the test works on a busy
    # machine (the deadline alone is over 15 minutes).
    "CIRCUIT_BREAKER_TIMEOUT": "30000",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
async def patient(
    sim: RunningSimulator, sqlite_url: str, clock: FakeClock
) -> AsyncIterator[Service]:
    async with running_service(sim, sqlite_url, env=LONG_DEADLINE, clock=clock) as running:
        yield running


async def _held(service: Service, payment_id: str) -> bool:
    async with service.container.payments.uow() as uow:
        payment = await uow.payments.get(payment_id)
    return payment is not None and payment.hold is not None


async def test_a_capture_in_flight_past_15_minutes_keeps_its_turn(
    patient: Service, clock: FakeClock
) -> None:
    service = patient
    payment = await service.create("100.00", tran_type="auth")
    await service.pay(payment)
    await service.callbacks_done()

    # PayTabs holds the capture's answer (not its queries') until the test lets it go.
    with held_answers(service.sim.engine, fault_paths=["/payment/request"]) as paytabs:
        first = asyncio.create_task(service.follow_up(payment["id"], "capture", "40.00"))
        await paytabs.arrived()  # the first capture is on its way
        assert await _held(service, payment["id"])
        clock.advance(timedelta(minutes=16))  # still within its 20-minute deadline
        # Asked now, PayTabs holds no answer yet: that proves nothing while the capture may land.
        asked = await service.api.get(f"/payments/v2/process/{payment['id']}")
        assert asked.status_code == 200, asked.text
        assert await _held(service, payment["id"])

        second = await service.follow_up(payment["id"], "capture", "60.00")
        assert second.status_code == 409, second.text
        assert "still waiting for PayTabs" in second.json()["detail"]
        assert paytabs.count == 1  # the second capture never left
        paytabs.release()

    answered = await first
    assert answered.status_code == 200, answered.text
    settled = await service.get(payment["id"])
    assert (settled["state"], settled["captured"], settled["has_conflict"]) == (
        "completed",
        "40.00",
        False,
    )
    captures = [
        t for t in await service.simulated(payment["cart_id"]) if t["tran_type"] == "Capture"
    ]
    assert len(captures) == 1
