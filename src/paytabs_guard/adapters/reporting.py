"""Read-only queries for operators: payment statistics, outbox lag, database and Redis pings.

Aggregates run in the database (``GROUP BY``), so the stats endpoint costs one round trip
whatever the number of payments; money stays integer minor units until it is formatted.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events.tables import DEAD, PENDING, event_deliveries, has_status
from paytabs_guard.adapters.sql.tables import outbox, payments


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    """Minor units per currency over the payments of a window."""

    payments: int
    amount: int  # what was asked for
    captured: int  # money that moved
    refunded: int


@dataclass(frozen=True, slots=True)
class PaymentStats:
    """Counts by state and totals by currency for payments created in a window."""

    by_state: Mapping[str, int]
    by_currency: Mapping[str, CurrencyTotals]


async def payment_stats(
    engine: AsyncEngine, *, created_from: datetime | None, created_to: datetime | None = None
) -> PaymentStats:
    """Aggregates over payments with ``created_from <= created_at < created_to``."""
    p = payments.c
    query = select(
        p.state,
        p.currency,
        func.count(),
        func.coalesce(func.sum(p.amount_minor), 0),
        func.coalesce(func.sum(p.captured_minor), 0),
        func.coalesce(func.sum(p.refunded_minor), 0),
    ).group_by(p.state, p.currency)
    if created_from is not None:
        query = query.where(p.created_at >= created_from)
    if created_to is not None:
        query = query.where(p.created_at < created_to)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    by_state: dict[str, int] = {}
    totals: dict[str, list[int]] = {}
    for state, currency, count, amount, captured, refunded in rows:
        by_state[state] = by_state.get(state, 0) + int(count)
        sums = totals.setdefault(currency, [0, 0, 0, 0])
        for index, value in enumerate((count, amount, captured, refunded)):
            sums[index] += int(value)
    return PaymentStats(
        by_state=by_state,
        by_currency={currency: CurrencyTotals(*sums) for currency, sums in totals.items()},
    )


@dataclass(frozen=True, slots=True)
class OutboxLag:
    """How far event delivery is behind: events not fanned out, deliveries not made."""

    unpublished: int
    oldest_unpublished_at: datetime | None
    pending_deliveries: int
    oldest_pending_delivery_at: datetime | None
    dead_letters: int

    def age_seconds(self, now: datetime) -> float:
        """Age of the oldest event still on its way (0 when nothing waits)."""
        oldest = [t for t in (self.oldest_unpublished_at, self.oldest_pending_delivery_at) if t]
        return max(0.0, (now - min(oldest)).total_seconds()) if oldest else 0.0


async def outbox_lag(engine: AsyncEngine, sinks: Collection[str] | None = None) -> OutboxLag:
    """Counts and oldest timestamps of undelivered events; with ``sinks``, deliveries to those
    sinks only (the configured ones: a sink no longer configured never takes its deliveries,
    and counting them kept the lag growing for ever)."""
    d = event_deliveries.c
    unpublished = select(func.count(), func.min(outbox.c.created_at)).where(
        outbox.c.published_at.is_(None)
    )
    pending = select(func.count(), func.min(d.created_at)).where(has_status(d.status, PENDING))
    dead = select(func.count()).where(has_status(d.status, DEAD))
    if sinks is not None:
        pending = pending.where(d.sink.in_(list(sinks)))
        dead = dead.where(d.sink.in_(list(sinks)))
    async with engine.connect() as connection:
        unpublished_count, oldest_unpublished = (await connection.execute(unpublished)).one()
        pending_count, oldest_pending = (await connection.execute(pending)).one()
        dead_count = (await connection.execute(dead)).scalar_one()
    return OutboxLag(
        unpublished=int(unpublished_count),
        oldest_unpublished_at=_aware(oldest_unpublished),
        pending_deliveries=int(pending_count),
        oldest_pending_delivery_at=_aware(oldest_pending),
        dead_letters=int(dead_count),
    )


@dataclass(frozen=True, slots=True)
class UndecidedPayments:
    """How many payments wait for the gateway or the customer, and since when the oldest."""

    count: int
    oldest_created_at: datetime | None

    def age_seconds(self, now: datetime) -> float:
        """Age of the oldest undecided payment (0 when none waits)."""
        if self.oldest_created_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_created_at).total_seconds())


async def undecided_payments(engine: AsyncEngine, states: Collection[str]) -> UndecidedPayments:
    """Count and oldest creation time of the payments in ``states`` (one indexed query: the
    ``(state, updated_at)`` index narrows to the few undecided rows)."""
    query = select(func.count(), func.min(payments.c.created_at)).where(
        payments.c.state.in_(list(states))
    )
    async with engine.connect() as connection:
        count, oldest = (await connection.execute(query)).one()
    return UndecidedPayments(count=int(count), oldest_created_at=_aware(oldest))


def _aware(value: object) -> datetime | None:
    # min() over a UtcDateTime column skips the type's result processing on SQLite (text).
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def ping_database(engine: AsyncEngine) -> float:
    """Seconds a trivial query took; raises when the database cannot be reached."""
    started = time.perf_counter()
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return time.perf_counter() - started


async def ping_redis(client: redis.Redis) -> float:
    """Seconds a PING took; raises when Redis cannot be reached."""
    started = time.perf_counter()
    await client.ping()
    return time.perf_counter() - started
