"""The relay's statement budget (docs/storage.md): a batch of events costs the same few
statements whatever its size, on SQLite and on PostgreSQL."""

from __future__ import annotations

import random

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import OutboxRelay
from paytabs_guard.adapters.sql.statements import counting
from testkit.clock import FakeClock

from .events_support import RecordingSink, add_event

pytestmark = pytest.mark.anyio

EVENTS = 20

# (statements, round trips) for one run_once that fans out and delivers EVENTS events of
# different payments to two sinks.
BUDGET: dict[str, tuple[int, int]] = {
    "sqlite": (6, 16),
    "postgresql": (6, 8),
}


async def test_a_relay_batch_stays_within_the_budget(engine: AsyncEngine) -> None:
    for n in range(EVENTS):
        await add_event(engine, f"pay_{n}")
    first, second = RecordingSink("first"), RecordingSink("second")
    relay = OutboxRelay(engine, [first, second], clock=FakeClock(), rng=random.Random(7))

    with counting(engine) as count:
        stats = await relay.run_once()

    assert stats.fanned_out == EVENTS
    assert stats.delivered == 2 * EVENTS
    assert len(first.received) == len(second.received) == EVENTS
    statements, round_trips = BUDGET[engine.dialect.name]
    print(f"{engine.dialect.name} relay batch: {count.describe()}")
    assert count.statements <= statements, count.describe()
    assert count.round_trips <= round_trips, count.describe()
