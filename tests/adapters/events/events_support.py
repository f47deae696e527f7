"""Helpers for the event-delivery tests: a fake clock, the schema, outbox rows, recording sinks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import CloudEvent, DeliveryFailed, OutboxEvent, OutboxRelay
from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.sql import create_engine, upgrade
from paytabs_guard.adapters.sql.tables import outbox
from paytabs_guard.domain.events import event_id_for
from testkit.clock import START

# A run waits for its sinks' drains on the real clock (1 s by default) and leaves a slower one
# to go on in the background. A test that counts what one run delivered gives the drains as
# long as a loaded machine may need (a wait of 0.2 s ran out in a stress run); a test about a
# drain that never ends says how long its run waits.
PATIENT_DRAIN_SECONDS: Final = 30.0


def patient_relay(engine: AsyncEngine, sinks: Sequence[Any], **options: Any) -> OutboxRelay:
    """An :class:`OutboxRelay` whose run waits for every drain that ends."""
    options.setdefault("drain_wait_seconds", PATIENT_DRAIN_SECONDS)
    return OutboxRelay(engine, sinks, **options)


def open_engine(url: str) -> AsyncEngine:
    """The project's engine (BEGIN IMMEDIATE and WAL on SQLite; the asyncpg pool on PostgreSQL)."""
    return create_engine(url)


async def build_schema(url: str) -> None:
    """Migrations 0001 (payments, outbox) and 0002 (event deliveries), as in production."""
    await upgrade(url)


def envelope(payment_id: str, event_type: str, occurrence: str, at: datetime) -> CloudEvent:
    return CloudEvent(
        id=event_id_for(payment_id, event_type, occurrence),
        type=event_type,
        subject=payment_id,
        time=at.isoformat().replace("+00:00", "Z"),
        data={"payment_id": payment_id, "cart_id": f"cart-{payment_id}", "state": "created"},
    )


async def add_event(
    engine: AsyncEngine,
    payment_id: str,
    event_type: str = "payment.created",
    *,
    occurrence: str = "",
    at: datetime = START,
) -> OutboxEvent:
    """Write one event to the outbox as the unit of work does (its own committed transaction)."""
    event = envelope(payment_id, event_type, occurrence, at)
    text = event.to_json()
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(outbox)
            .values(
                event_id=event.id,
                payment_id=payment_id,
                type=event_type,
                envelope=text,
                created_at=at,
            )
            .returning(outbox.c.seq)
        )
        seq = result.scalar_one()
    return OutboxEvent(
        seq=seq, event_id=event.id, payment_id=payment_id, type=event_type, envelope=text
    )


async def delivery_counts(engine: AsyncEngine) -> Counter[tuple[str, str, str]]:
    """(event id, sink, status) -> number of delivery rows."""
    d = event_deliveries
    query = select(d.c.event_id, d.c.sink, d.c.status, func.count()).group_by(
        d.c.event_id, d.c.sink, d.c.status
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return Counter({(row[0], row[1], row[2]): row[3] for row in rows})


async def outbox_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()


class RecordingSink:
    """A sink that keeps what it accepted; ``failing`` decides which attempts raise."""

    def __init__(
        self, name: str, *, failing: Callable[[OutboxEvent], bool] = lambda _: False
    ) -> None:
        self._name = name
        self.failing = failing
        self.received: list[OutboxEvent] = []
        self.attempts: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    def accepts(self, event_type: str) -> bool:
        return bool(event_type)  # every event (they all have a type)

    async def deliver(self, event: OutboxEvent) -> None:
        self.attempts.append(event.event_id)
        if self.failing(event):
            raise DeliveryFailed(f"{self._name} refused {event.type}")
        self.received.append(event)

    @property
    def received_ids(self) -> list[str]:
        return [event.event_id for event in self.received]


class RoutedRecordingSink(RecordingSink):
    """A ``RecordingSink`` that gives its types as data (``RoutedSink``: every type), so the
    relay may fan out to it in one statement on PostgreSQL."""

    @property
    def accepted_types(self) -> frozenset[str] | None:
        return None


class BatchRecordingSink(RecordingSink):
    """A ``RecordingSink`` that takes batches (``BatchSink``), as the Redis stream sink does;
    ``batches`` keeps the event ids of each call."""

    def __init__(
        self, name: str, *, failing: Callable[[OutboxEvent], bool] = lambda _: False
    ) -> None:
        super().__init__(name, failing=failing)
        self.batches: list[list[str]] = []

    async def deliver_many(self, events: Sequence[OutboxEvent]) -> Sequence[Exception | None]:
        self.batches.append([event.event_id for event in events])
        outcomes: list[Exception | None] = []
        for event in events:
            try:
                await self.deliver(event)
            except DeliveryFailed as error:
                outcomes.append(error)
            else:
                outcomes.append(None)
        return outcomes


def fail_times(times: int, *event_ids: str) -> Callable[[OutboxEvent], bool]:
    """Fail the first ``times`` attempts of each of ``event_ids`` (all events when none given)."""
    seen: Counter[str] = Counter()

    def failing(event: OutboxEvent) -> bool:
        if event_ids and event.event_id not in event_ids:
            return False
        seen[event.event_id] += 1
        return seen[event.event_id] <= times

    return failing
