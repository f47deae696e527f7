"""The page-expiry sleeper inside the running service: a page created over HTTP expires at its
deadline without a reconciliation pass, and stopping the service does not wait for the sleep."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest

from paytabs_guard.bootstrap import Container
from paytabs_guard.service.page_expiry import PageExpiry
from paytabs_simulator.server import RunningSimulator
from service.page_expiry_support import HandSleep
from testkit.clock import FakeClock

from .api_support import FAST_OPTIONS, new_key, running_service

pytestmark = pytest.mark.anyio

# A reconciliation pass runs at start and then not again during the test: only the sleeper can
# expire the page.
NO_SECOND_PASS = {"RECONCILE_INTERVAL_SECONDS": "86400"}


async def test_a_page_created_over_http_expires_at_its_deadline(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    clock, sleep = FakeClock(datetime.now(UTC)), HandSleep()

    def hand_driven(container: Container) -> Container:
        built = container.page_expiry
        assert built is not None  # serve builds one and gives its arm to the use cases
        assert container.payments.page_opened == built.arm
        expiry = PageExpiry(sleep)
        payments = dataclasses.replace(container.payments, page_opened=expiry.arm)
        return dataclasses.replace(container.with_payments(payments), page_expiry=expiry)

    async with running_service(sim, sqlite_url, env=NO_SECOND_PASS, reconcile=True,
                               clock=clock, container_hook=hand_driven) as service:  # fmt: skip
        await sleep.next_sleep()
        created = await service.api.post(
            "/payments/v2/create",
            json={"amount": "12.50", "currency": "SAR", "description": "Order 1001"},
            headers={"Idempotency-Key": new_key()},
        )
        assert created.status_code == 201, created.text
        payment = created.json()
        deadline = datetime.fromisoformat(payment["expires_at"])
        await sleep.next_sleep()  # the create woke it
        assert sleep.asked[-1] == deadline

        clock.now = deadline
        await sleep.look()
        stored = (await service.api.get(f"/payments/v2/{payment['id']}")).json()
        assert stored["state"] == "expired"


async def test_stopping_the_service_wakes_the_sleeper(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # A shutdown grace far longer than the test allows: only a sleeper that wakes on stop
    # lets the service stop in time (one that must be cancelled would take the whole grace).
    patient = dataclasses.replace(FAST_OPTIONS, shutdown_grace_seconds=30.0)
    service_cm = running_service(sim, sqlite_url, env=NO_SECOND_PASS, reconcile=True,
                                 options=patient)  # fmt: skip
    async with service_cm as service:
        created = await service.api.post(
            "/payments/v2/create",
            json={"amount": "12.50", "currency": "SAR", "description": "Order 1001"},
            headers={"Idempotency-Key": new_key()},
        )
        assert created.status_code == 201
        assert service.container.page_expiry is not None
        stopping = time.monotonic()
    assert time.monotonic() - stopping < timedelta(seconds=10).total_seconds()
