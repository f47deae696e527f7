"""The relay's statement budget (docs/storage.md): a batch of events costs the same few
statements whatever its size, on SQLite and on PostgreSQL."""

from __future__ import annotations

import random

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.statements import counting
from testkit.clock import FakeClock

from .events_support import RecordingSink, RoutedRecordingSink, add_event, patient_relay

pytestmark = pytest.mark.anyio

EVENTS = 20

# (statements, round trips) for one run_once that fans out and delivers EVENTS events of
# different payments to two sinks; by whether the sinks give their types as data (RoutedSink:
# on PostgreSQL the fan-out is then one statement) or only through accepts().
BUDGET: dict[tuple[str, bool], tuple[int, int]] = {
    ("sqlite", True): (6, 11),
    ("sqlite", False): (6, 11),
    ("postgresql", True): (5, 5),
    ("postgresql", False): (6, 8),
}


@pytest.mark.parametrize("per_payment", [1, 2], ids=["one-per-payment", "two-per-payment"])
@pytest.mark.parametrize("routed", [True, False], ids=["routed", "accepts-only"])
async def test_a_relay_batch_stays_within_the_budget(
    engine: AsyncEngine, routed: bool, per_payment: int
) -> None:
    # A payment's next event is claimed with its first and acknowledged with it: a create's
    # two events cost what two payments' first events cost.
    for n in range(EVENTS):
        await add_event(engine, f"pay_{n // per_payment}", occurrence=str(n))
    sink = RoutedRecordingSink if routed else RecordingSink
    first, second = sink("first"), sink("second")
    relay = patient_relay(engine, [first, second], clock=FakeClock(), rng=random.Random(7))

    with counting(engine) as count:
        stats = await relay.run_once()

    assert stats.fanned_out == EVENTS
    assert stats.delivered == 2 * EVENTS
    assert len(first.received) == len(second.received) == EVENTS
    statements, round_trips = BUDGET[(engine.dialect.name, routed)]
    print(
        f"{engine.dialect.name} relay batch ({'routed' if routed else 'accepts only'}): "
        f"{count.describe()}"
    )
    assert count.statements <= statements, count.describe()
    assert count.round_trips <= round_trips, count.describe()
