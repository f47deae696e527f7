"""Two relays on two instances (two engines) sharing PostgreSQL: no double delivery, no reorder."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import Backoff, OutboxEvent
from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.sql.tables import outbox
from testkit.clock import FakeClock

from .events_support import RecordingSink, add_event, build_schema, open_engine, patient_relay

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PAYMENTS = 12
EVENTS_PER_PAYMENT = 8
SINKS = ("redis", "webhook:shop", "subscriber:fulfilment")


class SharedLog:
    """What every sink of every relay accepted, in the order it accepted it."""

    def __init__(self) -> None:
        self.accepted: dict[str, list[OutboxEvent]] = defaultdict(list)


class SlowSink:
    """One instance's copy of a sink; copies on other instances share the log (the far end)."""

    def __init__(self, name: str, log: SharedLog) -> None:
        self._name = name
        self._log = log

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, event_type: str) -> bool:
        return event_type.startswith("payment.")

    async def deliver(self, event: OutboxEvent) -> None:
        await asyncio.sleep(0.001)  # let the other relay run while this delivery is in flight
        self._log.accepted[self._name].append(event)


class RoutedSlowSink(SlowSink):
    """The same, with its types given as data (``RoutedSink``): on PostgreSQL the relay fans
    out to it in one statement instead of a transaction of two."""

    @property
    def accepted_types(self) -> frozenset[str] | None:
        return None  # every type: all of this test's types start with "payment."


@pytest.fixture
async def two_engines(postgres_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    first, second = open_engine(postgres_url), open_engine(postgres_url)
    try:
        await build_schema(postgres_url)
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


@pytest.mark.parametrize("sink_class", [SlowSink, RoutedSlowSink])
async def test_two_relays_never_deliver_an_event_twice_to_a_sink(
    two_engines: tuple[AsyncEngine, AsyncEngine], sink_class: type[SlowSink]
) -> None:
    first_engine, second_engine = two_engines
    log = SharedLog()
    clock = FakeClock()
    relays = [
        patient_relay(
            engine,
            [sink_class(name, log) for name in SINKS],
            clock=clock,
            batch_size=5,
            instance_id=instance,
        )
        for engine, instance in ((first_engine, "instance-1"), (second_engine, "instance-2"))
    ]
    written: list[OutboxEvent] = []
    producing = True
    delivered_by: Counter[int] = Counter()

    async def produce() -> None:
        nonlocal producing
        for n in range(EVENTS_PER_PAYMENT):  # payments interleave, each in its own order
            for p in range(PAYMENTS):
                written.append(
                    await add_event(first_engine, f"pay_{p}", f"payment.step{n}", at=clock.now)
                )
        producing = False

    async def relay_until_done() -> None:
        expected = PAYMENTS * EVENTS_PER_PAYMENT * len(SINKS)
        while producing or sum(len(events) for events in log.accepted.values()) < expected:
            runs = [(n, relay.run_once()) for n, relay in enumerate(relays) for _ in range(3)]
            for (n, _), stats in zip(
                runs, await asyncio.gather(*(run for _, run in runs)), strict=True
            ):
                delivered_by[n] += stats.delivered

    await asyncio.wait_for(asyncio.gather(produce(), relay_until_done()), timeout=120)

    for name in SINKS:
        accepted = log.accepted[name]
        assert Counter(event.event_id for event in accepted) == Counter(
            event.event_id for event in written
        )  # every event, each exactly once
        for p in range(PAYMENTS):
            mine = [event.seq for event in accepted if event.payment_id == f"pay_{p}"]
            assert mine == sorted(mine), f"{name} reordered pay_{p}"
    async with first_engine.connect() as conn:
        statuses: dict[str, int] = dict(
            (
                await conn.execute(
                    select(event_deliveries.c.status, func.count()).group_by(
                        event_deliveries.c.status
                    )
                )
            ).all()
        )
        unpublished = (
            await conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        ).scalar_one()
    assert statuses == {"delivered": len(written) * len(SINKS)}
    assert delivered_by[0] > 0  # both instances did part of the work
    assert delivered_by[1] > 0
    assert unpublished == 0


@pytest.mark.parametrize("sink_class", [SlowSink, RoutedSlowSink])
async def test_an_event_waits_for_an_older_one_another_relay_is_still_fanning_out(
    two_engines: tuple[AsyncEngine, AsyncEngine], sink_class: type[SlowSink]
) -> None:
    engine, other_instance = two_engines
    a1 = await add_event(engine, "pay_a", "payment.created")
    a2 = await add_event(engine, "pay_a", "payment.completed")
    b1 = await add_event(engine, "pay_b", "payment.created")
    log = SharedLog()
    relay = patient_relay(engine, [sink_class("redis", log)], clock=FakeClock())

    async with other_instance.connect() as conn:
        # What another relay's fan-out holds while it runs: the older row, locked.
        await conn.execute(select(outbox.c.seq).where(outbox.c.seq == a1.seq).with_for_update())
        stats = await relay.run_once()
        assert stats.fanned_out == 2  # SKIP LOCKED: the locked row is left to its owner
        assert log.accepted["redis"] == [b1]  # a2 must not overtake a1
        await conn.rollback()

    await relay.run_once()
    assert log.accepted["redis"] == [b1, a1, a2]


async def test_a_payment_whose_first_delivery_another_relay_holds_keeps_its_later_ones_waiting(
    two_engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, other_instance = two_engines
    clock = FakeClock()
    a1 = await add_event(engine, "pay_a", "payment.created")
    a2 = await add_event(engine, "pay_a", "payment.completed")
    b1 = await add_event(engine, "pay_b", "payment.created")
    refusing = True
    sink = RecordingSink("redis", failing=lambda _: refusing)
    relay = patient_relay(engine, [sink], clock=clock, backoff=Backoff(1.0, 1.0))
    await relay.run_once()  # the sink refuses: the deliveries exist, a1 and b1 back off
    assert sink.received == []
    refusing = False
    clock.advance(60)

    async with other_instance.connect() as conn:
        # What another relay's claim holds while it runs: a1's delivery row, locked.
        await conn.execute(
            select(event_deliveries.c.id)
            .where(event_deliveries.c.event_id == a1.event_id)
            .with_for_update()
        )
        await relay.run_once()
        assert sink.received == [b1]  # a1 is skipped as locked, and a2 must not go before it
        await conn.rollback()

    await relay.run_once()
    assert sink.received == [b1, a1, a2]
