"""The outbox relay on SQLite and PostgreSQL: fan-out, retries, order per payment, dead letters."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import (
    Backoff,
    CloudEvent,
    EventBus,
    OutboxEvent,
    OutboxRelay,
    RelayStats,
    count_dead_letters,
    list_dead_letters,
    replay,
)
from paytabs_guard.adapters.events.delivery_marks import OUTAGE_RETRY_SECONDS, DeliveryMarks
from paytabs_guard.adapters.events.sinks import SinkUnreachable
from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.sql.tables import outbox
from testkit.clock import FakeClock

from .events_support import (
    BatchRecordingSink,
    RecordingSink,
    add_event,
    delivery_counts,
    fail_times,
    patient_relay,
)

pytestmark = pytest.mark.anyio

BACKOFF = Backoff(base_seconds=1.0, cap_seconds=60.0)


def relay_for(
    engine: AsyncEngine, *sinks: object, clock: FakeClock, **options: object
) -> OutboxRelay:
    return patient_relay(
        engine, sinks, clock=clock, backoff=BACKOFF, rng=random.Random(7), **options
    )


async def test_every_event_reaches_every_sink_once_in_order(engine: AsyncEngine) -> None:
    clock = FakeClock()
    a1 = await add_event(engine, "pay_a", "payment.created")
    b1 = await add_event(engine, "pay_b", "payment.created")
    a2 = await add_event(engine, "pay_a", "payment.initiated")
    first, second = RecordingSink("first"), RecordingSink("second")
    relay = patient_relay(engine, [first, second], clock=clock)

    stats = await relay.run_once()

    assert (stats.fanned_out, stats.delivered, stats.retried, stats.dead) == (3, 6, 0, 0)
    for sink in (first, second):
        assert sink.received == [a1, b1, a2]  # the exact stored envelopes, in order
    again = await relay.run_once()
    assert (again.fanned_out, again.delivered) == (0, 0)
    assert first.attempts == [a1.event_id, b1.event_id, a2.event_id]
    async with engine.connect() as conn:
        published = (await conn.execute(select(outbox.c.published_at))).scalars().all()
    assert published == [clock.now] * 3


async def test_a_failing_subscriber_gets_the_event_once_it_succeeds_and_blocks_nobody(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    event = await add_event(engine, "pay_a", "payment.completed")
    flaky_calls: list[str] = []
    steady_calls: list[str] = []

    async def fulfil_order(received: CloudEvent) -> None:
        flaky_calls.append(received.id)
        if len(flaky_calls) <= 3:
            raise ConnectionError("the warehouse is down")

    async def send_receipt(received: CloudEvent) -> None:
        steady_calls.append(received.id)

    events = EventBus()
    events.on("payment.completed", fulfil_order)
    events.on("payment.completed", send_receipt)
    relay = relay_for(engine, events, clock=clock)

    stats = await relay.run_once()
    assert (stats.delivered, stats.retried) == (1, 1)
    assert steady_calls == [event.event_id]  # not held up by the failing subscriber
    for _ in range(3):
        assert (await relay.run_once()).delivered == 0  # not due yet: nothing is attempted
        clock.advance(BACKOFF.cap_seconds)
        await relay.run_once()
    assert flaky_calls == [event.event_id] * 4  # three failures, then accepted
    assert steady_calls == [event.event_id]
    assert (await relay.run_once()).delivered == 0
    counts = await delivery_counts(engine)
    name = "subscriber:" + fulfil_order.__module__ + "." + fulfil_order.__qualname__
    assert counts[(event.event_id, name, "delivered")] == 1
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(event_deliveries.c.attempts, event_deliveries.c.last_error).where(
                    event_deliveries.c.sink == name
                )
            )
        ).one()
    assert row.attempts == 4
    assert row.last_error == "ConnectionError: the warehouse is down"


async def three_of_a_and_one_of_b(
    engine: AsyncEngine,
) -> tuple[OutboxEvent, OutboxEvent, OutboxEvent, OutboxEvent]:
    """pay_a's first two events, pay_b's first, pay_a's third, committed in that order."""
    a1 = await add_event(engine, "pay_a", "payment.created")
    a2 = await add_event(engine, "pay_a", "payment.initiated")
    b1 = await add_event(engine, "pay_b", "payment.created")
    a3 = await add_event(engine, "pay_a", "payment.completed")
    return a1, a2, b1, a3


async def test_a_later_event_of_a_payment_waits_while_an_earlier_one_backs_off(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    a1, a2, b1, a3 = await three_of_a_and_one_of_b(engine)
    picky = RecordingSink("picky", failing=fail_times(2, a1.event_id))
    other = RecordingSink("other")
    relay = relay_for(engine, picky, other, clock=clock)

    await relay.run_once()
    assert picky.received_ids == [b1.event_id]  # another payment is not blocked
    assert sorted(other.received, key=lambda e: e.seq) == [a1, a2, b1, a3]
    assert [e for e in other.received if e.payment_id == "pay_a"] == [a1, a2, a3]
    clock.advance(BACKOFF.cap_seconds)
    await relay.run_once()
    assert picky.received_ids == [b1.event_id]
    clock.advance(BACKOFF.cap_seconds)
    stats = await relay.run_once()

    assert stats.delivered == 3
    assert picky.received_ids == [b1.event_id, a1.event_id, a2.event_id, a3.event_id]
    assert picky.attempts.count(a2.event_id) == 1  # never tried out of turn


async def leases(engine: AsyncEngine, sink: str) -> dict[str, str | None]:
    """event id -> the relay holding its delivery to ``sink`` (None when nobody does)."""
    d = event_deliveries
    query = select(d.c.event_id, d.c.claimed_by).where(d.c.sink == sink)
    async with engine.connect() as conn:
        return {row.event_id: row.claimed_by for row in (await conn.execute(query)).all()}


@pytest.mark.parametrize("batches", [False, True], ids=["one-by-one", "batch-sink"])
async def test_events_claimed_behind_a_failed_one_go_back_unattempted_and_follow_it(
    engine: AsyncEngine, batches: bool
) -> None:
    clock = FakeClock()
    a1, a2, b1, a3 = await three_of_a_and_one_of_b(engine)
    kind = BatchRecordingSink if batches else RecordingSink
    sink = kind("picky", failing=fail_times(1, a1.event_id))
    relay = relay_for(engine, sink, clock=clock)

    stats = await relay.run_once()

    assert (stats.delivered, stats.retried) == (1, 1)
    assert sink.attempts == [a1.event_id, b1.event_id]  # a2 was claimed with a1, not sent
    assert set((await leases(engine, "picky")).values()) == {None}  # and nobody holds them
    clock.advance(BACKOFF.cap_seconds)
    stats = await relay.run_once()

    assert stats.delivered == 3
    assert sink.received_ids == [b1.event_id, a1.event_id, a2.event_id, a3.event_id]
    assert sink.attempts.count(a2.event_id) == sink.attempts.count(a3.event_id) == 1
    if isinstance(sink, BatchRecordingSink):
        # a payment's events go one wave after the other, never two of them in one call
        assert sink.batches == [[a1.event_id, b1.event_id], [a1.event_id], [a2.event_id],
                                [a3.event_id]]  # fmt: skip


async def test_a_later_event_never_passes_an_earlier_one_that_cannot_go_yet(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    a1 = await add_event(engine, "pay_a", "payment.created")
    a2 = await add_event(engine, "pay_a", "payment.initiated")
    a3 = await add_event(engine, "pay_a", "payment.completed")
    sink = RecordingSink("picky", failing=fail_times(1, a2.event_id))
    relay = relay_for(engine, sink, clock=clock)
    await relay.run_once()
    assert sink.received_ids == [a1.event_id]  # a2 backs off, a3 waits behind it
    # a1 is due again (as a dead letter put back by ``replay`` would be) while a2 still backs
    # off: a claim may take a1, but a3 must go on waiting for a2
    async with engine.begin() as conn:
        await conn.execute(
            update(event_deliveries)
            .where(event_deliveries.c.event_id == a1.event_id)
            .values(status="pending", next_attempt_at=clock.now)
        )

    await relay.run_once()

    assert sink.received_ids == [a1.event_id, a1.event_id]
    assert a3.event_id not in sink.attempts
    clock.advance(BACKOFF.cap_seconds)
    await relay.run_once()
    assert sink.received_ids == [a1.event_id, a1.event_id, a2.event_id, a3.event_id]


async def test_a_poison_event_becomes_a_dead_letter_and_the_payment_moves_on(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    poison = await add_event(engine, "pay_a", "payment.created")
    later = await add_event(engine, "pay_a", "payment.completed")
    broken = True
    sink = RecordingSink("erp", failing=lambda event: broken and event == poison)
    relay = relay_for(engine, sink, clock=clock, max_attempts=3)

    dead_total = 0
    for _ in range(3):
        stats = await relay.run_once()
        dead_total += stats.dead
        clock.advance(BACKOFF.cap_seconds)
    assert dead_total == 1
    assert sink.received_ids == [later.event_id]  # the next event went past the dead one

    letters = await list_dead_letters(engine)
    assert [(x.event_id, x.sink, x.attempts, x.type) for x in letters] == [
        (poison.event_id, "erp", 3, "payment.created")
    ]
    assert letters[0].last_error == "DeliveryFailed: erp refused payment.created"
    assert letters[0].dead_at is not None
    assert await list_dead_letters(engine, sink="other") == []
    assert await list_dead_letters(engine, event_type="payment.completed") == []
    assert await list_dead_letters(engine, sink="erp", event_type="payment.created") == letters
    assert await count_dead_letters(engine) == {"erp": 1}

    broken = False
    assert await replay(engine, [letters[0].id], clock=clock) == 1
    assert await replay(engine, [letters[0].id], clock=clock) == 0  # no longer dead
    stats = await relay.run_once()

    assert stats.delivered == 1
    assert sink.received_ids == [later.event_id, poison.event_id]
    assert await list_dead_letters(engine) == []
    assert await count_dead_letters(engine) == {}
    counts = await delivery_counts(engine)
    assert counts[(poison.event_id, "erp", "delivered")] == 1


class OutageSink(BatchRecordingSink):
    """A sink that cannot be reached while ``down`` (as the Redis sink raises it)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.down = True

    async def deliver_many(self, events: Sequence[OutboxEvent]) -> Sequence[Exception | None]:
        if self.down:
            self.batches.append([event.event_id for event in events])
            raise SinkUnreachable(f"{self.name}: ConnectionError")
        return await super().deliver_many(events)


async def test_a_sink_outage_never_makes_a_dead_letter_and_order_holds_when_it_is_back(
    engine: AsyncEngine,
) -> None:
    # Redis down for longer than max_attempts' backoff lasts: an outage of the sink is no
    # fault of the events. Nothing becomes a dead letter (the audit lost each payment's
    # payment.created that way, then its later events went to the stream without it), and
    # once the sink is back every event goes, each payment's in order.
    clock = FakeClock()
    created = await add_event(engine, "pay_a", "payment.created")
    completed = await add_event(engine, "pay_a", "payment.completed")
    other = await add_event(engine, "pay_b", "payment.created")
    sink = OutageSink("redis")
    relay = relay_for(engine, sink, clock=clock, max_attempts=3)

    for _ in range(10):  # far past three attempts
        stats = await relay.run_once()
        assert (stats.delivered, stats.dead) == (0, 0)
        clock.advance(OUTAGE_RETRY_SECONDS)
    assert await count_dead_letters(engine) == {}
    async with engine.connect() as conn:
        rows = (await conn.execute(select(event_deliveries))).mappings().all()
    assert {row["attempts"] for row in rows} == {0}  # an outage is not an attempt
    # each payment's first event met the outage; pay_a's next waits behind it, untried
    errors = {row["event_id"]: row["last_error"] for row in rows}
    assert errors == {
        created.event_id: "SinkUnreachable: redis: ConnectionError",
        other.event_id: "SinkUnreachable: redis: ConnectionError",
        completed.event_id: None,
    }

    sink.down = False
    await relay.run_once()
    assert sink.received_ids == [created.event_id, other.event_id, completed.event_id]


async def test_a_delivery_an_outage_failed_is_tried_again_soon(engine: AsyncEngine) -> None:
    clock = FakeClock()
    await add_event(engine, "pay_a", "payment.created")
    sink = OutageSink("redis")
    relay = relay_for(engine, sink, clock=clock, max_attempts=3)
    for _ in range(5):
        await relay.run_once()
        async with engine.connect() as conn:
            due = (await conn.execute(select(event_deliveries.c.next_attempt_at))).scalar_one()
        # never the growing backoff (up to 60 s here, an hour by default): within 15 s
        assert 0 <= (due - clock.now).total_seconds() <= OUTAGE_RETRY_SECONDS
        clock.advance(OUTAGE_RETRY_SECONDS)
    assert len(sink.batches) == 5


async def test_an_outage_met_in_a_batch_is_not_tried_again_for_its_later_events(
    engine: AsyncEngine,
) -> None:
    # A webhook endpoint whose host is down: one wave learns it, the later waves of the
    # batch are not sent to it (each would wait for its own connect to fail).
    clock = FakeClock()
    for n in range(3):
        await add_event(engine, f"pay_{n}", "payment.created")
        await add_event(engine, f"pay_{n}", "payment.completed")
    calls: list[str] = []

    class HostDown(RecordingSink):
        async def deliver(self, event: OutboxEvent) -> None:
            calls.append(event.event_id)
            if len(calls) > 3:  # the first wave (each payment's created) goes, then it is down
                raise SinkUnreachable(f"{self.name}: ConnectError")
            await super().deliver(event)

    sink = HostDown("webhook:shop")
    stats = await relay_for(engine, sink, clock=clock).run_once()
    assert len(calls) == 4  # the first wave, then one try of the second
    assert (stats.delivered, stats.dead) == (3, 0)
    assert await count_dead_letters(engine) == {}


async def test_subscribers_get_only_the_types_they_asked_for(engine: AsyncEngine) -> None:
    clock = FakeClock()
    created = await add_event(engine, "pay_a", "payment.created")
    completed = await add_event(engine, "pay_a", "payment.completed")
    completions: list[CloudEvent] = []
    everything: list[str] = []

    async def on_completed(event: CloudEvent) -> None:
        completions.append(event)

    async def audit(event: CloudEvent) -> None:
        everything.append(event.type)

    events = EventBus()
    events.on("payment.completed", on_completed)
    events.on("*", audit)
    await relay_for(engine, events, clock=clock).run_once()

    assert [event.id for event in completions] == [completed.event_id]
    assert completions[0] == CloudEvent.from_json(completed.envelope)
    assert everything == ["payment.created", "payment.completed"]
    counts = await delivery_counts(engine)
    assert sum(n for (event_id, _, _), n in counts.items() if event_id == created.event_id) == 1


async def test_a_crash_during_delivery_redelivers_after_the_lease(engine: AsyncEngine) -> None:
    clock = FakeClock()
    event = await add_event(engine, "pay_a", "payment.completed")
    entered = asyncio.Event()
    received: list[str] = []

    async def hangs(received_event: CloudEvent) -> None:
        received.append(received_event.id)
        entered.set()
        await asyncio.Event().wait()  # the process "dies" here, after the sink got the event

    dying = EventBus()
    dying.on("*", hangs, name="fulfilment")
    crashed = relay_for(engine, dying, clock=clock, instance_id="a", lease_seconds=30)

    class DiedBeforeReleasing(DeliveryMarks):
        async def release(self, ids: Sequence[int]) -> None:  # noqa: ARG002 - died: runs nothing
            return None

    marks = crashed._marks
    crashed._marks = DiedBeforeReleasing(
        *(getattr(marks, field.name) for field in dataclasses.fields(marks))
    )
    run = asyncio.create_task(crashed.run_once())
    await entered.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    async def accepts(received_event: CloudEvent) -> None:
        received.append(received_event.id)

    survivor = EventBus()
    survivor.on("*", accepts, name="fulfilment")
    relay = relay_for(engine, survivor, clock=clock, instance_id="b", lease_seconds=30)
    assert (await relay.run_once()).delivered == 0  # the lease of instance "a" still holds
    clock.advance(31)
    assert (await relay.run_once()).delivered == 1

    assert received == [event.event_id, event.event_id]  # at least once: consumers dedupe on id
    counts = await delivery_counts(engine)
    assert counts == {(event.event_id, "subscriber:fulfilment", "delivered"): 1}


async def test_a_subscriber_registered_later_gets_events_fanned_out_after_it(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    early = await add_event(engine, "pay_a", "payment.created")
    first = RecordingSink("first")
    events = EventBus()
    relay = relay_for(engine, first, events, clock=clock)
    await relay.run_once()
    late: list[str] = []

    async def joined_late(event: CloudEvent) -> None:
        late.append(event.id)

    events.on("*", joined_late)
    second = await add_event(engine, "pay_a", "payment.completed")
    await relay.run_once()

    assert first.received_ids == [early.event_id, second.event_id]
    assert late == [second.event_id]


async def test_without_any_sink_nothing_is_fanned_out(engine: AsyncEngine) -> None:
    clock = FakeClock()
    event = await add_event(engine, "pay_a", "payment.created")
    events = EventBus()
    relay = relay_for(engine, events, clock=clock)
    assert (await relay.run_once()).fanned_out == 0

    got: list[str] = []

    async def first_subscriber(received: CloudEvent) -> None:
        got.append(received.id)

    events.on("payment.created", first_subscriber)
    assert (await relay.run_once()).delivered == 1
    assert got == [event.event_id]


class CountedRelay(OutboxRelay):
    """The relay with a hook after each run, so a test waits for runs instead of for time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.runs: asyncio.Queue[RelayStats] = asyncio.Queue()

    async def run_once(self) -> RelayStats:
        stats = await super().run_once()
        self.runs.put_nowait(stats)
        return stats


async def test_run_forever_wakes_on_notify_and_stops(engine: AsyncEngine) -> None:
    got = asyncio.Event()

    async def handler(event: CloudEvent) -> None:
        got.set()

    events = EventBus()
    events.on("*", handler)
    relay = CountedRelay(engine, [events])
    stop = asyncio.Event()
    worker = asyncio.create_task(relay.run_forever(stop, interval=3600))
    # The first (empty) run is over, however long it took; the relay now waits an hour.
    first = await asyncio.wait_for(relay.runs.get(), timeout=10)
    assert first.fanned_out == 0
    await add_event(engine, "pay_a", "payment.created")
    relay.notify()
    # Only notify() can start the second run within the hour.
    second = await asyncio.wait_for(relay.runs.get(), timeout=10)
    assert second.fanned_out == 1
    await asyncio.wait_for(got.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(worker, timeout=10)
    assert relay.runs.empty()  # stop ended the loop without another run


async def test_duplicate_sink_names_are_refused(engine: AsyncEngine) -> None:
    relay = OutboxRelay(engine, [RecordingSink("same"), RecordingSink("same")])
    with pytest.raises(ValueError, match="sink names must be unique: same"):
        await relay.run_once()


async def test_a_sink_that_is_down_costs_one_batch_per_run_and_blocks_no_other(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    written = [await add_event(engine, f"pay_{n}") for n in range(5)]
    down = RecordingSink("down", failing=lambda _: True)
    up = RecordingSink("up")
    stats = await relay_for(engine, down, up, clock=clock, batch_size=2).run_once()

    assert len(down.attempts) == 2  # one round of two, then the sink's turn ended
    assert up.received == written
    assert (stats.delivered, stats.retried) == (5, 2)


async def test_a_delivery_whose_lease_ran_out_is_left_to_the_relay_that_took_it_over(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    a = await add_event(engine, "pay_a")
    b = await add_event(engine, "pay_b")
    taken_over = RecordingSink("shop")
    other_instance = relay_for(engine, taken_over, clock=clock, instance_id="other")

    class SlowSink(RecordingSink):
        async def deliver(self, event: OutboxEvent) -> None:
            await super().deliver(event)
            if event == a:  # so slow that the lease of the whole batch runs out...
                clock.advance(61)
                await other_instance.run_once()  # ...and another instance takes b over

    slow = SlowSink("shop")
    await relay_for(engine, slow, clock=clock, instance_id="slow", lease_seconds=60).run_once()

    assert slow.received == [a]  # b was not sent on a lease that had run out
    assert taken_over.received == [a, b]  # a's lease ran out mid-call: at least once
    counts = await delivery_counts(engine)
    assert counts == {(a.event_id, "shop", "delivered"): 1, (b.event_id, "shop", "delivered"): 1}


class HangingSink(RecordingSink):
    """A merchant endpoint that hangs on one payment's events until released."""

    def __init__(self, name: str, hangs_on: str) -> None:
        super().__init__(name)
        self.hangs_on = hangs_on
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()

    async def deliver(self, event: OutboxEvent) -> None:
        if event.payment_id == self.hangs_on:
            self.hanging.set()
            await self.release.wait()
        await super().deliver(event)


async def test_a_sink_hanging_on_one_payment_holds_up_no_other_sink_or_payment(
    engine: AsyncEngine,
) -> None:
    """One merchant endpoint hanging on one event held every payment's events, and the Redis
    stream's, for its whole timeout: a run waited for every sink's drain."""
    clock = FakeClock()
    hook, stream = HangingSink("webhook:erp", hangs_on="pay_slow"), RecordingSink("redis")
    # A run waits for its drains on the real clock: the stream's (a few writes) must end
    # within the wait on a loaded machine too (0.2 s did not, in a stress run). The hook's
    # never ends, so the first run takes the whole wait: long enough to be sure, no longer.
    relay = relay_for(engine, hook, stream, clock=clock, drain_wait_seconds=5.0)
    slow = await add_event(engine, "pay_slow", "payment.created")
    first = await relay.run_once()  # returns while the hook hangs
    assert hook.hanging.is_set()
    assert stream.received == [slow]
    assert first.delivered == 1  # the stream's; the hook's drain goes on without the run
    other = await add_event(engine, "pay_other", "payment.created")
    second = await relay.run_once()
    # the next run serves the stream, and another drain of the hook serves the payment the
    # hanging one does not hold
    assert stream.received == [slow, other]
    assert hook.received == [other]
    assert second.delivered == 2
    later = await add_event(engine, "pay_slow", "payment.initiated")
    await relay.run_once()
    assert stream.received == [slow, other, later]
    assert hook.received == [other]  # pay_slow's next event waits behind its first
    hook.release.set()
    await relay.settle()  # the drain the test let hang
    await relay.run_once()
    assert hook.received == [other, slow, later]  # in order per payment


async def test_a_stop_during_delivery_gives_the_claim_back(engine: AsyncEngine) -> None:
    """Stopped mid-delivery (shutdown cancels the drain), the relay hands its claim back: the
    next start sends the event at once instead of waiting out the lease (60 s)."""
    clock = FakeClock()
    event = await add_event(engine, "pay_a", "payment.completed")
    entered = asyncio.Event()

    async def hangs(received_event: CloudEvent) -> None:
        entered.set()
        await asyncio.Event().wait()

    stopping = EventBus()
    stopping.on("*", hangs, name="fulfilment")
    first = relay_for(engine, stopping, clock=clock, instance_id="a", lease_seconds=30)
    run = asyncio.create_task(first.run_once())
    await entered.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    received: list[str] = []

    async def accepts(received_event: CloudEvent) -> None:
        received.append(received_event.id)

    restarted = EventBus()
    restarted.on("*", accepts, name="fulfilment")
    relay = relay_for(engine, restarted, clock=clock, instance_id="b", lease_seconds=30)
    assert (await relay.run_once()).delivered == 1  # no lease to wait out
    assert received == [event.event_id]
