"""The SQL ``PaymentRepository``: loads payments and saves what changed.

A repository belongs to one unit of work. It keeps an identity map of the payments it loaded or
was given, each with a snapshot of what the database holds, and on commit writes only what
changed: the ``payments`` row behind an optimistic ``version`` check, and the new history
entries, gateway transactions, conflict notes and cart ids. Statements for reading live in
``payment_reads.py``, the mapping of a payment to rows and back in ``payment_rows.py``, and how
writes reach the database in ``writes.py``.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, literal, or_, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from paytabs_guard import tracing
from paytabs_guard.domain import GatewayTransaction, Payment, PaymentEvent, PaymentState
from paytabs_guard.service.ports import PageDeadline

from .deadlines import waiting_pages
from .errors import ConcurrentUpdate
from .payment_reads import build_payments, lock_statement, lookup_statement, select_payments
from .payment_rows import (
    cart_id_rows,
    conflict_rows,
    history_rows,
    payment_row,
    transaction_row,
)
from .tables import (
    HELD,
    PENDING_FOLLOW_UP,
    UtcDateTime,
    gateway_transactions,
    payment_cart_ids,
    payment_conflicts,
    payment_transitions,
    payments,
)
from .transaction import DbTransaction
from .writes import Writes


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the database holds for one payment (compared to see what to write)."""

    row: dict[str, object]
    history: int
    conflicts: int
    cart_ids: tuple[str, ...]
    transactions: dict[str, GatewayTransaction]
    next_seq: int = field(compare=False)  # the next free gateway_transactions.seq


@dataclass(slots=True)
class _Entry:
    payment: Payment
    stored: _Snapshot | None  # None: given to add(), not loaded here
    written: _Snapshot | None = None  # what this transaction wrote, until it commits


_COMMITTED: weakref.WeakKeyDictionary[Payment, tuple[int, _Snapshot]] = weakref.WeakKeyDictionary()
"""What was committed for a payment object still in memory, at which version. A unit of work
given that object back (``add`` of a saved payment) writes behind the ``version`` check without
reading the payment again: if the row still holds that version, it holds this snapshot (every
write bumps the version), and if not the update matches no row and raises ConcurrentUpdate."""


def _committed_snapshot(payment: Payment) -> _Snapshot | None:
    known = _COMMITTED.get(payment)
    if known is None or known[0] != payment.version:
        return None
    return known[1]


class SqlPaymentRepository:
    """The ``PaymentRepository`` of one ``SqlUnitOfWork``."""

    def __init__(self, transaction: DbTransaction) -> None:
        self._transaction = transaction
        self._entries: dict[str, _Entry] = {}

    def add(self, payment: Payment) -> None:
        """Save ``payment`` on commit: a new one (``version`` 0) is inserted; one loaded by an
        earlier unit of work is re-attached and updated if its ``version`` is still current."""
        known = self._entries.get(payment.id)
        if known is not None and known.payment is not payment:
            raise ValueError(f"payment {payment.id} is already in this unit of work")
        if known is None:
            self._entries[payment.id] = _Entry(payment, stored=None)
        if tracing.ENABLED:
            tracing.note_payment(payment.id)

    async def get(self, payment_id: str, *, for_update: bool = False) -> Payment | None:
        """The payment ``payment_id``; ``for_update`` locks it until the unit of work ends."""
        return _first(await self._lookup("id", payment_id, for_update))

    async def get_by_cart_id(self, cart_id: str, *, for_update: bool = False) -> Payment | None:
        """The payment whose current or earlier gateway attempt used ``cart_id``."""
        return _first(await self._lookup("cart_id", cart_id, for_update))

    async def get_by_tran_ref(self, tran_ref: str, *, for_update: bool = False) -> Payment | None:
        """The payment owning ``tran_ref`` (its originating transaction or a follow-up)."""
        return _first(await self._lookup("tran_ref", tran_ref, for_update))

    async def list(
        self,
        *,
        states: Collection[PaymentState] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Sequence[Payment]:
        """Newest first, ``created_from <= created_at < created_to``; ``after`` is the id of the
        last payment of the previous page (an unknown id gives an empty page)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        conditions: list[ColumnElement[bool]] = []
        if states:
            conditions.append(payments.c.state.in_([state.value for state in states]))
        if created_from is not None:
            conditions.append(payments.c.created_at >= created_from)
        if created_to is not None:
            conditions.append(payments.c.created_at < created_to)
        if after is not None:
            async with self._transaction.reading() as connection:
                cursor = await connection.scalar(
                    select(payments.c.created_at).where(payments.c.id == after)
                )
            if cursor is None:
                return []
            # Keyset pagination on the (created_at, id) index: stable under concurrent inserts.
            position = tuple_(literal(cursor, UtcDateTime()), literal(after))
            conditions.append(tuple_(payments.c.created_at, payments.c.id) < position)
        newest_first = (payments.c.created_at.desc(), payments.c.id.desc())
        return await self._load(and_(true(), *conditions), order_by=newest_first, limit=limit)

    async def stuck(
        self,
        states: Collection[PaymentState],
        *,
        updated_before: datetime,
        limit: int,
        expired_before: datetime | None = None,
    ) -> Sequence[str]:
        """Ids of payments in ``states`` not updated since ``updated_before`` or past their
        page deadline (``expired_before``), oldest first. PostgreSQL locks them with SKIP
        LOCKED, so another reconciler's unit of work gets other ones; SQLite has one writer at
        a time anyway."""
        if not states or limit < 1:
            return []
        due = payments.c.updated_at < updated_before
        if expired_before is not None:
            due = or_(due, payments.c.expires_at <= expired_before)
        statement = (
            select(payments.c.id)
            .where(payments.c.state.in_([state.value for state in states]), due)
            .order_by(payments.c.updated_at, payments.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        connection = await self._transaction.connection()
        return list((await connection.scalars(statement)).all())

    async def awaiting_follow_ups(self, *, before: datetime, limit: int) -> Sequence[str]:
        """Ids of payments holding a follow-up since before ``before``, or with one pending and
        unchanged since ``before``; oldest first, claimed like ``stuck``."""
        if limit < 1:
            return []
        connection = await self._transaction.connection()
        return list((await connection.scalars(awaiting_follow_ups_statement(before, limit))).all())

    async def waiting_pages(
        self, *, after: PageDeadline | None, limit: int
    ) -> Sequence[PageDeadline]:
        """The deadlines of payments awaiting the customer after ``after``, earliest first."""
        connection = await self._transaction.connection()
        return await waiting_pages(connection, after=after, limit=limit)

    # ---- writing: called by the unit of work ------------------------------------------------

    async def flush(self, writes: Callable[[], Awaitable[Writes]]) -> Sequence[PaymentEvent]:
        """Write every new or changed payment through ``writes()`` (asked for only when there
        is something to write); return their pending events, in order."""
        events: list[PaymentEvent] = []
        for entry in self._entries.values():
            payment = entry.payment
            if entry.stored is None and payment.version == 0:
                entry.written = await _insert(await writes(), payment)
            else:
                if entry.stored is None:
                    entry.stored = _committed_snapshot(payment) or await self._stored_version(
                        payment
                    )
                stored = entry.stored
                current = _snapshot(payment, next_seq=stored.next_seq)
                if current == stored and not payment.pending_events:
                    continue
                entry.written = await _update(await writes(), payment, stored)
            events.extend(payment.pending_events)
        return events

    def committed(self) -> None:
        """The transaction committed: bump versions, drain the saved events."""
        for entry in self._entries.values():
            if entry.written is not None:
                entry.payment.version += 1
                entry.payment.collect_events()
                entry.stored, entry.written = entry.written, None
                _COMMITTED[entry.payment] = (entry.payment.version, entry.stored)

    def rolled_back(self) -> None:
        """The transaction rolled back: nothing was written, the payments keep their events."""
        for entry in self._entries.values():
            entry.written = None

    # ---- loading ----------------------------------------------------------------------------

    async def _lookup(self, by: str, key: str, for_update: bool) -> Sequence[Payment]:
        if not for_update:
            statement = lookup_statement(self._transaction.dialect_name, by, for_update=False)
            return self._adopted(await self._transaction.read(statement, {"key": key}))
        connection = await self._transaction.connection()
        if connection.dialect.name == "postgresql":
            await connection.execute(lock_statement(by), {"key": key})
            for_update = False  # locked above; read below with a snapshot taken after the lock
        statement = lookup_statement(connection.dialect.name, by, for_update)
        return await self._loaded(connection, statement, {"key": key})

    async def _load(
        self,
        where: ColumnElement[bool],
        *,
        order_by: Sequence[ColumnElement[Any]] = (),
        limit: int | None = None,
    ) -> Sequence[Payment]:
        async with self._transaction.reading() as connection:
            statement = select_payments(connection.dialect.name).where(where)
            statement = statement.order_by(*order_by).limit(limit)
            return await self._loaded(connection, statement, {})

    async def _loaded(
        self, connection: AsyncConnection, statement: Select[Any], params: dict[str, Any]
    ) -> Sequence[Payment]:
        return self._adopted((await connection.execute(statement, params)).mappings().all())

    def _adopted(self, rows: Sequence[Mapping[Any, Any]]) -> Sequence[Payment]:
        """The payments of ``rows``; one already in the identity map is kept as it is."""
        fresh = [row for row in rows if row["id"] not in self._entries]
        for payment, next_seq in build_payments(fresh):
            stored = _snapshot(payment, next_seq=next_seq)
            self._entries[payment.id] = _Entry(payment, stored=stored)
        return [self._entries[row["id"]].payment for row in rows]

    async def _stored_version(self, payment: Payment) -> _Snapshot:
        """The stored state of a re-attached payment, if it is still at ``payment.version``."""
        connection = await self._transaction.connection()
        statement = select_payments(connection.dialect.name).where(payments.c.id == payment.id)
        if connection.dialect.name == "postgresql":
            await connection.execute(lock_statement("id"), {"key": payment.id})
        else:
            statement = statement.with_for_update(of=payments)
        rows = (await connection.execute(statement)).mappings().all()
        built = build_payments(rows)
        if not built or built[0][0].version != payment.version:
            raise ConcurrentUpdate(payment.id, payment.version)
        stored, next_seq = built[0]
        return _snapshot(stored, next_seq=next_seq)


# ---- writing --------------------------------------------------------------------------------


async def _insert(writes: Writes, payment: Payment) -> _Snapshot:
    await writes.insert_payment(payment.id, {**payment_row(payment), "version": 1})
    cart_ids = _cart_ids(payment)
    await writes.insert_children(
        payment.id, payment_cart_ids, cart_id_rows(payment.id, cart_ids, ())
    )
    await writes.insert_children(payment.id, payment_transitions, history_rows(payment, 0))
    await writes.insert_children(payment.id, payment_conflicts, conflict_rows(payment, 0))
    records = payment.transactions
    rows = [transaction_row(payment.id, seq, t) for seq, t in enumerate(records)]
    await writes.insert_children(payment.id, gateway_transactions, rows)
    return _snapshot(payment, next_seq=len(records))


async def _update(writes: Writes, payment: Payment, stored: _Snapshot) -> _Snapshot:
    if len(payment.history) < stored.history or len(payment.conflicts) < stored.conflicts:
        raise ValueError(f"payment {payment.id}: history and conflicts are append-only")
    values = payment_row(payment)
    del values["id"]
    values["version"] = payment.version + 1
    await writes.update_payment(payment.id, payment.version, values)
    new_cart_ids = cart_id_rows(payment.id, _cart_ids(payment), stored.cart_ids)
    await writes.insert_children(payment.id, payment_cart_ids, new_cart_ids)
    history = history_rows(payment, stored.history)
    await writes.insert_children(payment.id, payment_transitions, history)
    conflicts = conflict_rows(payment, stored.conflicts)
    await writes.insert_children(payment.id, payment_conflicts, conflicts)
    next_seq = await _write_transactions(writes, payment, stored)
    return _snapshot(payment, next_seq=next_seq)


async def _write_transactions(writes: Writes, payment: Payment, stored: _Snapshot) -> int:
    """Mirror ``payment.transactions``: statuses change in place, and a new attempt drops the
    abandoned page's record. Returns the next free ``seq``."""
    current = {record.tran_ref: record for record in payment.transactions}
    gone = [ref for ref in stored.transactions if ref not in current]
    if gone:
        await writes.delete_transactions(payment.id, gone)
    next_seq = stored.next_seq
    inserts: list[dict[str, object]] = []
    for record in payment.transactions:
        before = stored.transactions.get(record.tran_ref)
        if before is None:
            inserts.append(transaction_row(payment.id, next_seq, record))
            next_seq += 1
        elif before != record:
            row = transaction_row(payment.id, 0, record)
            del row["seq"], row["tran_ref"], row["payment_id"]
            await writes.update_transaction(payment.id, record.tran_ref, row)
    await writes.insert_children(payment.id, gateway_transactions, inserts)
    return next_seq


_HELD_BY: Final = payments.alias("held_by")


def awaiting_follow_ups_statement(before: datetime, limit: int) -> Select[Any]:
    """The ``awaiting_follow_ups`` query. The candidates come from the two partial indexes (a
    union of small lists), then their payments by primary key: no payment without a follow-up
    in flight is read, however many there are."""
    in_flight = (
        select(_HELD_BY.c.id)
        .where(HELD, _HELD_BY.c.hold_started_at < before)
        .union(select(gateway_transactions.c.payment_id).where(PENDING_FOLLOW_UP))
    )
    return (
        select(payments.c.id)
        .where(
            payments.c.id.in_(in_flight),
            or_(payments.c.hold_started_at < before, payments.c.updated_at < before),
        )
        .order_by(payments.c.updated_at, payments.c.id)
        .limit(limit)
        .with_for_update(of=payments, skip_locked=True)
    )


def _first(found: Sequence[Payment]) -> Payment | None:
    if found and tracing.ENABLED:  # the one payment this work is about, for its spans
        tracing.note_payment(found[0].id)
    return found[0] if found else None


def _snapshot(payment: Payment, *, next_seq: int) -> _Snapshot:
    return _Snapshot(
        row=payment_row(payment),
        history=len(payment.history),
        conflicts=len(payment.conflicts),
        cart_ids=_cart_ids(payment),
        transactions={record.tran_ref: record for record in payment.transactions},
        next_seq=next_seq,
    )


def _cart_ids(payment: Payment) -> tuple[str, ...]:
    """Every cart id the payment used, in order; the current one last."""
    return (*payment.abandoned_cart_ids, payment.cart_id)
