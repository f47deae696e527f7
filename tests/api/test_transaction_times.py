"""A transaction time PayTabs cannot have meant never blocks a result or a payment.

Go, which sends PayTabs' notifications, writes an unset time as ``0001-01-01T00:00:00Z``. Stored
as it came, that instant became PostgreSQL's ``-infinity``, which no later read could parse (the
payment's every read a 500, reconciliation stopped at it); with an offset it overflowed on the
way to UTC, and the callback was answered 503 for ever."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from paytabs_simulator.server import RunningSimulator

from .api_support import Service, deliver, running_service, transaction

pytestmark = pytest.mark.anyio

ODD_TIMES = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "1970-01-01T00:00:00Z",
]


@pytest.mark.parametrize("at", ODD_TIMES)
async def test_a_result_with_an_impossible_time_is_applied_and_the_payment_stays_readable(
    any_service: Service, at: str
) -> None:
    payment = await any_service.create("12.50", "SAR")
    pending = transaction(payment, "P")
    pending["payment_result"]["transaction_time"] = at
    assert (await deliver(any_service.anonymous, pending)).json()["outcome"] == "processed"
    assert (await any_service.get(payment["id"]))["state"] == "pending"

    authorised = transaction(payment, "A")
    authorised["payment_result"]["transaction_time"] = at
    assert (await deliver(any_service.anonymous, authorised)).json()["outcome"] == "processed"
    assert (await any_service.get(payment["id"]))["state"] == "completed"
    listed = await any_service.api.get("/payments/v2")
    assert listed.status_code == 200, listed.text
    assert payment["id"] in [item["id"] for item in listed.json()["data"]]
    events = await any_service.api.get(f"/payments/v2/{payment['id']}/events")
    assert events.status_code == 200, events.text
    # Recorded at its arrival instead: PayTabs never made a transaction in year 1 or 9999.
    async with any_service.container.engine.connect() as connection:
        stored = (
            await connection.execute(
                text("SELECT at FROM gateway_transactions WHERE tran_ref = :ref"),
                {"ref": payment["tran_ref"]},
            )
        ).scalar_one()
    assert str(stored)[:4] not in {"0001", "9999", "1970"}, stored


@pytest.mark.postgres
@pytest.mark.parametrize("stored", ["-infinity", "infinity"])
async def test_a_payment_stored_with_an_infinite_time_is_still_read(
    sim: RunningSimulator, postgres_url: str, stored: str
) -> None:
    # Written before the transformer refused such times: the row must still be readable.
    async with running_service(sim, postgres_url) as service:
        payment = await service.create("12.50", "SAR")
        await deliver(service.anonymous, transaction(payment, "A"))
        async with service.container.engine.begin() as connection:
            await connection.execute(
                text("UPDATE gateway_transactions SET at = CAST(CAST(:at AS text) AS timestamptz)"),
                {"at": stored},
            )
        read = await service.api.get(f"/payments/v2/{payment['id']}")
        assert read.status_code == 200, read.text
        assert read.json()["state"] == "completed"
