"""Dead letters: deliveries that failed ``max_attempts`` times, for an operator to list and replay.

A dead letter is an ``event_deliveries`` row with ``status = 'dead'``; its event stays in the
outbox. ``replay`` puts it back to ``pending`` with ``attempts = 0``, due now: the relay then
delivers it like a new one (after any older pending event of the same payment for that sink),
which is later than the events of that payment that went past it meanwhile.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.rows import from_row
from paytabs_guard.resilience.clock import utc_now

from .relay import Clock
from .tables import DEAD, PENDING, event_deliveries, has_status


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event that a sink never accepted; ``id`` is what ``replay`` takes."""

    id: int
    seq: int
    event_id: str
    payment_id: str
    type: str
    sink: str
    attempts: int
    last_error: str | None
    dead_at: datetime | None


async def list_dead_letters(
    engine: AsyncEngine,
    *,
    sink: str | None = None,
    event_type: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Dead deliveries, oldest event first, optionally for one sink and/or one event type."""
    d = event_deliveries
    query = select(
        d.c.id,
        d.c.seq,
        d.c.event_id,
        d.c.payment_id,
        d.c.type,
        d.c.sink,
        d.c.attempts,
        d.c.last_error,
        d.c.dead_at,
    ).where(has_status(d.c.status, DEAD))
    if sink is not None:
        query = query.where(d.c.sink == sink)
    if event_type is not None:
        query = query.where(d.c.type == event_type)
    query = query.order_by(d.c.seq, d.c.sink).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [from_row(DeadLetter, row) for row in rows]


async def count_dead_letters(engine: AsyncEngine) -> dict[str, int]:
    """How many dead letters each sink has (for a health check or a gauge)."""
    d = event_deliveries
    query = select(d.c.sink, func.count()).where(has_status(d.c.status, DEAD)).group_by(d.c.sink)
    async with engine.connect() as conn:
        return {row[0]: row[1] for row in await conn.execute(query)}


async def replay(engine: AsyncEngine, ids: Collection[int], *, clock: Clock = utc_now) -> int:
    """Send dead letters again: back to pending, ``attempts`` 0, due now. Returns how many.

    Ids that are not (or no longer) dead are left alone, so replaying twice is harmless.
    """
    if not ids:
        return 0
    d = event_deliveries
    statement = (
        update(d)
        .where(d.c.id.in_(list(ids)), d.c.status == DEAD)
        .values(
            status=PENDING,
            attempts=0,
            next_attempt_at=clock(),
            dead_at=None,
            claimed_by=None,
            claimed_until=None,
        )
    )
    async with engine.begin() as conn:
        result = await conn.execute(statement)
    return result.rowcount
