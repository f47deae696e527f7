"""The ``EventStore`` port on SQL: events from ``outbox``, deliveries from ``event_deliveries``.

Reads use their own short connections (no unit of work: nothing here changes a payment).
Redelivery and replay are single ``UPDATE`` statements guarded by the row's status, so two
operators (or an operator and the relay) racing on the same row cannot double it up: the relay
only claims ``pending`` rows, and only ``delivered``/``dead`` rows are reset.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.rows import from_row
from paytabs_guard.adapters.sql.tables import outbox
from paytabs_guard.resilience.clock import utc_now
from paytabs_guard.service.events import DeadLetterEntry, Delivery, LeftDeliveries, StoredEvent

from . import webhook_aliases
from .relay import Clock
from .tables import DEAD, DELIVERED, PENDING, event_deliveries, has_status

_o = outbox.c
_d = event_deliveries.c
# Labelled as StoredEvent's fields, so rows become StoredEvents by name.
_EVENT_COLUMNS = (
    _o.seq,
    _o.event_id.label("id"),
    _o.type,
    _o.payment_id,
    _o.created_at,
    _o.published_at.label("fanned_out_at"),
    _o.envelope,
)
_DELIVERY_COLUMNS = (
    _d.id,
    _d.sink,
    _d.status,
    _d.attempts,
    _d.last_error,
    _d.next_attempt_at,
    _d.delivered_at,
    _d.dead_at,
)


# PostgreSQL numbers ``seq`` at insert, not at commit: a feed paged by seq alone could pass a
# row whose transaction was still running and never show it. So the feed there pages by
# (writing transaction, seq) and shows only rows of transactions older than every transaction
# still running; whatever commits later sorts after any cursor already given out
# (migration 0008). The oldest running transaction counts wherever it runs in the cluster: a
# long one holds the feed back (nothing is lost, events wait), as docs/events.md says.
_RUNNING_XMIN: Final = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def _txid_at(seq: int) -> ColumnElement[Any]:
    """The feed position of the cursor's event. The row with the greatest seq at or before it
    stands in should that event be gone (an operator purged old rows); 0 before any."""
    found = select(_o.txid).where(_o.seq <= seq).order_by(_o.seq.desc()).limit(1)
    return func.coalesce(found.scalar_subquery(), 0)


def _delivery(row: Any) -> Delivery:
    delivery = from_row(Delivery, row)
    if delivery.status == PENDING:
        return delivery
    # The next attempt only means something while the delivery is still pending.
    return replace(delivery, next_attempt_at=None)


class SqlEventStore:
    """Events and deliveries of one database."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def events(
        self, *, types: Collection[str], payment_id: str | None, after: int | None, limit: int
    ) -> Sequence[StoredEvent]:
        conditions: list[ColumnElement[bool]] = []
        if types:
            conditions.append(_o.type.in_(list(types)))
        if payment_id is not None:
            conditions.append(_o.payment_id == payment_id)
        order: tuple[ColumnElement[Any], ...] = (_o.seq,)
        if self._engine.dialect.name == "postgresql":
            conditions.append(_o.txid < _RUNNING_XMIN)
            if after is not None:
                conditions.append(tuple_(_o.txid, _o.seq) > tuple_(_txid_at(after), after))
            order = (_o.txid, _o.seq)
        elif after is not None:
            conditions.append(_o.seq > after)
        query = select(*_EVENT_COLUMNS).where(true(), *conditions).order_by(*order).limit(limit)
        async with self._engine.connect() as connection:
            return [from_row(StoredEvent, row) for row in await connection.execute(query)]

    async def payment_events(self, payment_id: str, *, limit: int) -> Sequence[StoredEvent]:
        # Not the feed's query: without a cursor nothing can be stepped past, so a committed
        # event shows at once even while an older transaction anywhere on the server still
        # runs (the feed's xmin guard would hide it). seq is the order the payment's changes
        # were written in: each one is written after the one before it committed.
        query = (
            select(*_EVENT_COLUMNS).where(_o.payment_id == payment_id).order_by(_o.seq).limit(limit)
        )
        async with self._engine.connect() as connection:
            return [from_row(StoredEvent, row) for row in await connection.execute(query)]

    async def has_seq(self, seq: int) -> bool:
        query = select(_o.seq).where(_o.seq == seq)
        async with self._engine.connect() as connection:
            return (await connection.execute(query)).first() is not None

    async def event(self, event_id: str) -> StoredEvent | None:
        query = select(*_EVENT_COLUMNS).where(_o.event_id == event_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else from_row(StoredEvent, row)

    async def deliveries(self, event_ids: Collection[str]) -> Mapping[str, Sequence[Delivery]]:
        if not event_ids:
            return {}
        query = (
            select(_d.event_id, *_DELIVERY_COLUMNS)
            .where(_d.event_id.in_(list(event_ids)))
            .order_by(_d.event_id, _d.sink)
        )
        found: dict[str, list[Delivery]] = {}
        async with self._engine.connect() as connection:
            for row in await connection.execute(query):
                found.setdefault(row.event_id, []).append(_delivery(row))
        return found

    async def redeliver(self, event_id: str, sinks: Collection[str]) -> Sequence[str]:
        condition = (_d.event_id == event_id) & _d.status.in_((DELIVERED, DEAD))
        if sinks:
            condition &= _d.sink.in_(list(sinks))
        async with self._engine.begin() as connection:
            chosen = list((await connection.scalars(select(_d.sink).where(condition))).all())
            if chosen:
                # The status guard again: a row the relay changed meanwhile is left alone.
                await connection.execute(
                    update(event_deliveries)
                    .where(condition, _d.sink.in_(chosen))
                    .values(**self._back_to_pending())
                )
        return sorted(chosen)

    async def dead_letters(
        self, *, sink: str | None, event_type: str | None, after: int | None, limit: int
    ) -> Sequence[DeadLetterEntry]:
        conditions = self._dead(sink, event_type)
        if after is not None:
            conditions.append(_d.id > after)
        query = (
            select(*_DELIVERY_COLUMNS, _d.event_id, _d.type, _d.payment_id, _d.seq)
            .where(*conditions)
            .order_by(_d.id)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = list(await connection.execute(query))
        return [
            DeadLetterEntry(
                delivery=_delivery(row),
                event_id=row.event_id,
                event_type=row.type,
                payment_id=row.payment_id,
                seq=row.seq,
            )
            for row in rows
        ]

    async def replay_dead_letters(
        self,
        *,
        ids: Collection[int],
        sink: str | None,
        event_type: str | None,
        sinks: Collection[str] | None = None,
    ) -> int:
        conditions = self._dead(sink, event_type)
        if ids:
            conditions.append(_d.id.in_(list(ids)))
        if sinks is not None:
            conditions.append(_d.sink.in_(list(sinks)))
        statement = update(event_deliveries).where(*conditions).values(**self._back_to_pending())
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return int(result.rowcount)

    async def dead_letter_sinks(self, ids: Collection[int]) -> set[str]:
        if not ids:
            return set()
        query = select(_d.sink).where(*self._dead(None, None), _d.id.in_(list(ids))).distinct()
        async with self._engine.connect() as connection:
            return set((await connection.scalars(query)).all())

    async def left_deliveries(self, configured: Collection[str]) -> Sequence[LeftDeliveries]:
        # One branch per status, each written to use that status's partial index: the table's
        # delivered rows (most of it) are never read.
        def left(status: str) -> Select[Any]:
            return (
                select(_d.sink, literal(status, Text()).label("status"), func.count())
                .where(has_status(_d.status, status), _d.sink.not_in(list(configured)))
                .group_by(_d.sink)
            )

        counts: dict[str, dict[str, int]] = {}
        async with self._engine.connect() as connection:
            for sink, status, count in await connection.execute(
                union_all(left(PENDING), left(DEAD))
            ):
                counts.setdefault(sink, {})[status] = int(count)
        return [
            LeftDeliveries(sink, found.get(PENDING, 0), found.get(DEAD, 0))
            for sink, found in sorted(counts.items())
        ]

    async def adopt_position_names(self) -> int | None:
        return await webhook_aliases.adopt_position_names(self._engine)

    async def drop_deliveries(self, sink: str) -> int:
        waiting = or_(has_status(_d.status, PENDING), has_status(_d.status, DEAD))
        statement = delete(event_deliveries).where(_d.sink == sink, waiting)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return int(result.rowcount)

    # ---- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _dead(sink: str | None, event_type: str | None) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [has_status(_d.status, DEAD)]
        if sink is not None:
            conditions.append(_d.sink == sink)
        if event_type is not None:
            conditions.append(_d.type == event_type)
        return conditions

    def _back_to_pending(self) -> dict[str, object]:
        """Like a new delivery: pending, no attempts, due now, no lease, no outcome."""
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return {
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "delivered_at": None,
            "dead_at": None,
            "claimed_by": None,
            "claimed_until": None,
        }
