"""What the relay writes back about the deliveries it claimed: delivered, given back, or
failed (tried again after a backoff, or a dead letter).

Each mark is one statement on its own (atomic by itself, no transaction around it). The
relay (``relay.py``) decides what to claim and what to send; this module keeps the rules of
what a failure costs: a sink's outage (``SinkUnreachable``) costs no attempt and never makes
a dead letter, anything else counts towards ``max_attempts`` and backs off with full jitter.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.compiled import fetch_all_alone
from paytabs_guard.adapters.sql.engine import single_statement

from .backoff import Backoff
from .cloudevents import OutboxEvent
from .relay_statements import (
    ACKNOWLEDGED_COLUMNS,
    MARK_DELIVERED,
    MARK_DELIVERED_POSTGRES,
    RELEASE,
    failure_mark,
)
from .sinks import Sink, SinkUnreachable
from .tables import DELIVERED

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH: Final = 1000
#: A delivery a sink's outage failed is tried again within this long (full jitter).
OUTAGE_RETRY_SECONDS: Final = 15.0


@dataclass(slots=True)
class RelayStats:
    """What one ``run_once`` did."""

    fanned_out: int = 0  # outbox rows distributed to the sinks
    delivered: int = 0
    retried: int = 0  # failed attempts that will be tried again
    dead: int = 0  # deliveries that became dead letters

    def add(self, other: RelayStats) -> None:
        self.fanned_out += other.fanned_out
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this relay claimed, with its event, until ``lease_until``."""

    id: int
    attempts: int
    event: OutboxEvent
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class DeliveryMarks:
    """Writes what became of claimed deliveries, as relay ``instance_id``."""

    engine: AsyncEngine
    clock: Callable[[], datetime]
    instance_id: str
    max_attempts: int
    backoff: Backoff
    rng: random.Random

    async def delivered(self, ids: Sequence[int], stats: RelayStats) -> None:
        """One acknowledgement for the batch's successes. Not conditional on our lease: the
        events *were* delivered, whoever holds the rows now."""
        if not ids:
            return
        values = {
            "ids": list(ids),
            "status": DELIVERED,
            "delivered_at": self.clock(),
            "claimed_by": None,
            "claimed_until": None,
        }
        if self.engine.dialect.name == "postgresql":
            await fetch_all_alone(
                self.engine, MARK_DELIVERED_POSTGRES, values, ACKNOWLEDGED_COLUMNS
            )
        else:
            async with single_statement(self.engine) as conn:
                await conn.execute(MARK_DELIVERED, values)
        stats.delivered += len(ids)

    async def release(self, ids: Sequence[int]) -> None:
        """Give back deliveries claimed but held (an earlier event of their payment was not
        accepted), so they wait for that one, not for their lease to run out."""
        if not ids:
            return
        async with single_statement(self.engine) as conn:
            await conn.execute(RELEASE, {"ids": list(ids), "b_instance": self.instance_id})

    async def failed(self, sink: Sink, item: Claimed, error: Exception, stats: RelayStats) -> None:
        """``sink`` did not take ``item``: its next attempt's time, or a dead letter."""
        now = self.clock()
        # A sink's outage is no fault of the event: not counted, never a dead letter, and
        # tried again soon, the sink may be back any second (sinks.SinkUnreachable).
        outage = isinstance(error, SinkUnreachable)
        attempts = item.attempts + (not outage)
        is_dead = attempts >= self.max_attempts and not outage
        ceiling = OUTAGE_RETRY_SECONDS if outage else self.backoff.ceiling(attempts)
        retry_at = now + timedelta(seconds=self.rng.uniform(0.0, ceiling))
        reason = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
        mark = failure_mark(item.id, self.instance_id, attempts, reason, now, retry_at, is_dead)
        async with single_statement(self.engine) as conn:
            await conn.execute(mark)
        if is_dead:
            stats.dead += 1
            logger.error(
                "event %s (%s) is a dead letter for %s after %d attempts: %s",
                item.event.event_id,
                item.event.type,
                sink.name,
                attempts,
                reason,
            )
        else:
            stats.retried += 1
            (logger.debug if outage else logger.warning)(
                "delivery of event %s to %s failed (attempt %d of %d), retry at %s: %s",
                item.event.event_id,
                sink.name,
                attempts,
                self.max_attempts,
                retry_at.isoformat(),
                reason,
            )
