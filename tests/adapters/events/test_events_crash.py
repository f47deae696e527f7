"""The process dies between the commit and any publish: the event is still delivered, once."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import CloudEvent, EventBus
from paytabs_guard.domain.events import event_id_for
from testkit.clock import FakeClock

from .events_support import RecordingSink, delivery_counts, outbox_count, patient_relay

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).with_name("crash_after_commit.py")


async def test_an_event_committed_by_a_killed_process_is_delivered_once_per_sink(
    engine: AsyncEngine, database_url: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        database_url,
        "pay_killed",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    assert stdout == b"committed\n"

    fulfilled: list[CloudEvent] = []

    async def fulfil(event: CloudEvent) -> None:
        fulfilled.append(event)

    events = EventBus()
    events.on("payment.created", fulfil)
    erp, audit = RecordingSink("erp"), RecordingSink("audit")
    relay = patient_relay(engine, [events, erp, audit], clock=FakeClock())
    await relay.run_once()
    await relay.run_once()  # a second pass finds nothing more to do

    event_id = event_id_for("pay_killed", "payment.created")
    assert await outbox_count(engine) == 1
    assert erp.received_ids == audit.received_ids == [event_id]
    assert [(event.id, event.type, event.subject) for event in fulfilled] == [
        (event_id, "payment.created", "pay_killed")
    ]
    assert fulfilled[0].data["amount"] == "12.500"
    sinks = {"erp", "audit", "subscriber:" + fulfil.__module__ + "." + fulfil.__qualname__}
    assert await delivery_counts(engine) == {(event_id, sink, "delivered"): 1 for sink in sinks}
