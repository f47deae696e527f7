"""Payments ⇄ rows: the only code that knows how a ``Payment`` is stored.

A repository belongs to one unit of work. It keeps an identity map of the payments it loaded or
was given, each with a snapshot of what the database holds, and on commit writes only what
changed: the ``payments`` row behind an optimistic ``version`` check, and the new history
entries, gateway transactions, conflict notes and cart ids.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    RowMapping,
    ScalarSelect,
    Select,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from paytabs_guard import tracing
from paytabs_guard.domain import (
    ConflictNote,
    FollowUpHold,
    GatewayStatus,
    GatewayTransaction,
    Money,
    Payment,
    PaymentEvent,
    PaymentState,
    ResultSource,
    Transition,
    TranType,
    Trigger,
)
from paytabs_guard.service.ports import PageDeadline

from .deadlines import waiting_pages
from .errors import ConcurrentUpdate
from .tables import (
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
            connection = await self._transaction.connection()
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
        connection = await self._transaction.connection()
        if for_update and connection.dialect.name == "postgresql":
            await connection.execute(_lock_statement(by), {"key": key})
            for_update = False  # locked above; read below with a snapshot taken after the lock
        statement = _lookup_statement(connection.dialect.name, by, for_update)
        return await self._loaded(connection, statement, {"key": key})

    async def _load(
        self,
        where: ColumnElement[bool],
        *,
        for_update: bool = False,
        order_by: Sequence[ColumnElement[Any]] = (),
        limit: int | None = None,
    ) -> Sequence[Payment]:
        connection = await self._transaction.connection()
        statement = (
            _select_payments(connection.dialect.name).where(where).order_by(*order_by).limit(limit)
        )
        if for_update:
            if connection.dialect.name == "postgresql":
                await connection.execute(select(payments.c.id).where(where).with_for_update())
            else:
                statement = statement.with_for_update(of=payments)
        return await self._loaded(connection, statement, {})

    async def _loaded(
        self, connection: AsyncConnection, statement: Select[Any], params: dict[str, Any]
    ) -> Sequence[Payment]:
        rows = (await connection.execute(statement, params)).mappings().all()
        fresh = [row for row in rows if row["id"] not in self._entries]
        for payment, next_seq in _build(fresh):
            stored = _snapshot(payment, next_seq=next_seq)
            self._entries[payment.id] = _Entry(payment, stored=stored)
        return [self._entries[row["id"]].payment for row in rows]

    async def _stored_version(self, payment: Payment) -> _Snapshot:
        """The stored state of a re-attached payment, if it is still at ``payment.version``."""
        connection = await self._transaction.connection()
        statement = _select_payments(connection.dialect.name).where(payments.c.id == payment.id)
        if connection.dialect.name == "postgresql":
            await connection.execute(_lock_statement("id"), {"key": payment.id})
        else:
            statement = statement.with_for_update(of=payments)
        rows = (await connection.execute(statement)).mappings().all()
        built = _build(rows)
        if not built or built[0][0].version != payment.version:
            raise ConcurrentUpdate(payment.id, payment.version)
        stored, next_seq = built[0]
        return _snapshot(stored, next_seq=next_seq)


# ---- writing --------------------------------------------------------------------------------


async def _insert(writes: Writes, payment: Payment) -> _Snapshot:
    await writes.insert_payment(payment.id, {**_payment_row(payment), "version": 1})
    cart_ids = _cart_ids(payment)
    await writes.insert_children(
        payment.id, payment_cart_ids, _cart_id_rows(payment.id, cart_ids, ())
    )
    await writes.insert_children(payment.id, payment_transitions, _history_rows(payment, 0))
    await writes.insert_children(payment.id, payment_conflicts, _conflict_rows(payment, 0))
    records = payment.transactions
    rows = [_transaction_row(payment.id, seq, t) for seq, t in enumerate(records)]
    await writes.insert_children(payment.id, gateway_transactions, rows)
    return _snapshot(payment, next_seq=len(records))


async def _update(writes: Writes, payment: Payment, stored: _Snapshot) -> _Snapshot:
    if len(payment.history) < stored.history or len(payment.conflicts) < stored.conflicts:
        raise ValueError(f"payment {payment.id}: history and conflicts are append-only")
    values = _payment_row(payment)
    del values["id"]
    values["version"] = payment.version + 1
    await writes.update_payment(payment.id, payment.version, values)
    new_cart_ids = _cart_id_rows(payment.id, _cart_ids(payment), stored.cart_ids)
    await writes.insert_children(payment.id, payment_cart_ids, new_cart_ids)
    history = _history_rows(payment, stored.history)
    await writes.insert_children(payment.id, payment_transitions, history)
    conflicts = _conflict_rows(payment, stored.conflicts)
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
            inserts.append(_transaction_row(payment.id, next_seq, record))
            next_seq += 1
        elif before != record:
            row = _transaction_row(payment.id, 0, record)
            del row["seq"], row["tran_ref"], row["payment_id"]
            await writes.update_transaction(payment.id, record.tran_ref, row)
    await writes.insert_children(payment.id, gateway_transactions, inserts)
    return next_seq


def _first(found: Sequence[Payment]) -> Payment | None:
    if found and tracing.ENABLED:  # the one payment this work is about, for its spans
        tracing.note_payment(found[0].id)
    return found[0] if found else None


def _snapshot(payment: Payment, *, next_seq: int) -> _Snapshot:
    return _Snapshot(
        row=_payment_row(payment),
        history=len(payment.history),
        conflicts=len(payment.conflicts),
        cart_ids=_cart_ids(payment),
        transactions={record.tran_ref: record for record in payment.transactions},
        next_seq=next_seq,
    )


def _cart_ids(payment: Payment) -> tuple[str, ...]:
    """Every cart id the payment used, in order; the current one last."""
    return (*payment.abandoned_cart_ids, payment.cart_id)


# ---- domain -> rows ---------------------------------------------------------------------------


def _payment_row(payment: Payment) -> dict[str, object]:
    currency = payment.amount.currency
    for money in (payment.captured, payment.refunded):
        if money.currency != currency:
            raise ValueError(f"payment {payment.id}: {money} is not in {currency}")
    return {
        "id": payment.id,
        "cart_id": payment.cart_id,
        "profile_id": payment.profile_id,
        "amount_minor": payment.amount.minor_units,
        "currency": currency,
        "tran_type": payment.tran_type.value,
        "description": payment.description,
        "state": payment.state.value,
        "tran_ref": payment.tran_ref,
        "expires_at": payment.expires_at,
        "redirect_url": payment.redirect_url,
        "return_url": payment.return_url,
        "metadata": dict(payment.metadata),
        "saved_card_id": payment.saved_card_id,
        "captured_minor": payment.captured.minor_units,
        "refunded_minor": payment.refunded.minor_units,
        "conflict_count": len(payment.conflicts),
        **_hold_columns(payment),
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
    }


def _hold_columns(payment: Payment) -> dict[str, object]:
    hold = payment.hold
    if hold is not None and hold.amount.currency != payment.amount.currency:
        raise ValueError(f"payment {payment.id}: a hold of {hold.amount} is not in its currency")
    return {
        "hold_kind": hold.kind.value if hold else None,
        "hold_amount_minor": hold.amount.minor_units if hold else None,
        "hold_parent_tran_ref": hold.parent_tran_ref if hold else None,
        "hold_sequence": hold.sequence if hold else None,
        "hold_started_at": hold.started_at if hold else None,
    }


def _cart_id_rows(
    payment_id: str, cart_ids: tuple[str, ...], stored: tuple[str, ...]
) -> list[dict[str, object]]:
    return [
        {"cart_id": cart_id, "payment_id": payment_id, "attempt": attempt}
        for attempt, cart_id in enumerate(cart_ids, start=1)
        if cart_id not in stored
    ]


def _history_rows(payment: Payment, start: int) -> list[dict[str, object]]:
    return [
        {
            "payment_id": payment.id,
            "seq": seq,
            "from_state": entry.from_state.value if entry.from_state else None,
            "to_state": entry.to_state.value,
            "trigger": entry.trigger.value,
            "source": entry.source.value,
            "gateway_ref": entry.gateway_ref,
            "reason": entry.reason,
            "at": entry.at,
        }
        for seq, entry in enumerate(payment.history)
        if seq >= start
    ]


def _conflict_rows(payment: Payment, start: int) -> list[dict[str, object]]:
    return [
        {
            "payment_id": payment.id,
            "tran_ref": note.tran_ref,
            "tran_type": note.tran_type.value,
            "reported_status": note.reported_status.value if note.reported_status else None,
            "state": note.state.value,
            "source": note.source.value,
            "at": note.at,
            "reason": note.reason,
        }
        for note in payment.conflicts[start:]
    ]


def _transaction_row(payment_id: str, seq: int, record: GatewayTransaction) -> dict[str, object]:
    return {
        "tran_ref": record.tran_ref,
        "payment_id": payment_id,
        "seq": seq,
        "previous_tran_ref": record.previous_tran_ref,
        "tran_type": record.tran_type.value,
        "status": record.status.value if record.status else None,
        "amount_minor": record.amount.minor_units,
        "currency": record.amount.currency,
        "at": record.at,
        "charged_minor": record.charged.minor_units if record.charged else None,
        "charged_currency": record.charged.currency if record.charged else None,
        "response_code": record.response_code or None,
        "response_message": record.response_message or None,
    }


# ---- rows -> domain ---------------------------------------------------------------------------


_KEY: BindParameter[str] = bindparam("key")
_LOOKUPS: Final[dict[str, ColumnElement[bool]]] = {
    "id": payments.c.id == _KEY,
    "cart_id": payments.c.id
    == select(payment_cart_ids.c.payment_id)
    .where(payment_cart_ids.c.cart_id == _KEY)
    .scalar_subquery(),
    "tran_ref": or_(
        payments.c.tran_ref == _KEY,
        payments.c.id.in_(
            select(gateway_transactions.c.payment_id).where(gateway_transactions.c.tran_ref == _KEY)
        ),
    ),
}


@functools.cache
def _lock_statement(by: str) -> Select[Any]:
    """PostgreSQL locks a payment with a statement of its own, before reading it whole. One
    statement would read the child rows (its subqueries) with the snapshot taken *before*
    waiting for the lock: after the wait it would see the payment row as the other transaction
    left it (PostgreSQL re-reads a locked row) but that transaction's history and gateway
    transactions not at all. The read after the lock takes a new snapshot (READ COMMITTED)."""
    return select(payments.c.id).where(_LOOKUPS[by]).with_for_update()


@functools.cache
def _lookup_statement(dialect_name: str, by: str, for_update: bool) -> Select[Any]:
    """One statement object per lookup, built once: SQLAlchemy then finds its compiled form
    by a memoized cache key instead of building a statement and its key on every call."""
    statement = _select_payments(dialect_name).where(_LOOKUPS[by])
    # Locked even for a payment already in the identity map: the lock is the point. SQLite
    # ignores FOR UPDATE; its transaction holds the database write lock.
    return statement.with_for_update(of=payments) if for_update else statement


_CHILDREN: Final = (
    ("cart_ids", payment_cart_ids, "attempt"),
    ("history", payment_transitions, "seq"),
    ("records", gateway_transactions, "seq"),
    ("conflicts", payment_conflicts, "id"),
)


def _select_payments(dialect_name: str) -> Select[Any]:
    """``payments`` rows with their child rows as JSON arrays, so one query loads a payment
    whole (four child selects before). Each child row is a JSON array of the table's columns;
    order is restored in Python from the ordering column, which needs no aggregate ``ORDER BY``
    (SQLite before 3.44 has none)."""
    children = [
        _children_json(dialect_name, table).label(f"_children_{name}")
        for name, table, _ in _CHILDREN
    ]
    return select(payments, *children)


def _children_json(dialect_name: str, table: Table) -> ScalarSelect[Any]:
    columns = list(table.c)
    if dialect_name == "postgresql":
        aggregate = func.json_agg(func.json_build_array(*columns))
    else:
        aggregate = func.json_group_array(func.json_array(*columns))
    return (
        select(type_coerce(aggregate, JSON))
        .where(table.c.payment_id == payments.c.id)
        .correlate(payments)
        .scalar_subquery()
    )


def _child_rows(row: RowMapping, name: str, table: Table, order: str) -> list[dict[str, Any]]:
    """The child rows of ``table`` in ``row`` as column -> value maps, ordered by ``order``."""
    raw = row[f"_children_{name}"]
    items = json.loads(raw) if isinstance(raw, str) else raw or []
    columns = list(table.c)
    rows = []
    for item in items:
        child: dict[str, Any] = {}
        for column, value in zip(columns, item, strict=True):
            if value is not None and isinstance(column.type, UtcDateTime):
                value = _instant(value)
            child[column.name] = value
        rows.append(child)
    rows.sort(key=lambda child: child[order])
    return rows


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _build(rows: Sequence[RowMapping]) -> list[tuple[Payment, int]]:
    """Payments from rows of :func:`_select_payments`, each with the next free
    ``gateway_transactions.seq``."""
    built = []
    for row in rows:
        cart_ids, history, records, conflicts = (
            _child_rows(row, name, table, order) for name, table, order in _CHILDREN
        )
        payment = _payment(
            row,
            cart_ids=[child["cart_id"] for child in cart_ids],
            history=[_transition(child) for child in history],
            records=[_gateway_transaction(child) for child in records],
            conflicts=[_conflict(child) for child in conflicts],
        )
        next_seq = max((child["seq"] for child in records), default=-1) + 1
        built.append((payment, next_seq))
    return built


def _payment(
    row: RowMapping,
    *,
    cart_ids: list[str],
    history: list[Transition],
    records: list[GatewayTransaction],
    conflicts: list[ConflictNote],
) -> Payment:
    currency = row["currency"]
    return Payment(
        id=row["id"],
        cart_id=row["cart_id"],
        profile_id=row["profile_id"],
        amount=Money(row["amount_minor"], currency),
        tran_type=TranType(row["tran_type"]),
        description=row["description"],
        state=PaymentState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        captured=Money(row["captured_minor"], currency),
        refunded=Money(row["refunded_minor"], currency),
        tran_ref=row["tran_ref"],
        expires_at=row["expires_at"],
        transactions=records,
        history=history,
        conflicts=conflicts,
        abandoned_cart_ids=[cart_id for cart_id in cart_ids if cart_id != row["cart_id"]],
        hold=_hold(row),
        redirect_url=row["redirect_url"],
        return_url=row["return_url"],
        metadata=dict(row["metadata"]),
        saved_card_id=row["saved_card_id"],
        version=row["version"],
    )


def _hold(row: RowMapping) -> FollowUpHold | None:
    if row["hold_kind"] is None:
        return None
    return FollowUpHold(
        kind=TranType(row["hold_kind"]),
        amount=Money(row["hold_amount_minor"], row["currency"]),
        parent_tran_ref=row["hold_parent_tran_ref"],
        sequence=row["hold_sequence"],
        started_at=row["hold_started_at"],
    )


def _transition(row: Mapping[str, Any]) -> Transition:
    return Transition(
        from_state=PaymentState(row["from_state"]) if row["from_state"] else None,
        to_state=PaymentState(row["to_state"]),
        trigger=Trigger(row["trigger"]),
        source=ResultSource(row["source"]),
        gateway_ref=row["gateway_ref"],
        at=row["at"],
        reason=row["reason"],
    )


def _gateway_transaction(row: Mapping[str, Any]) -> GatewayTransaction:
    return GatewayTransaction(
        tran_ref=row["tran_ref"],
        previous_tran_ref=row["previous_tran_ref"],
        tran_type=TranType(row["tran_type"]),
        status=GatewayStatus(row["status"]) if row["status"] else None,
        amount=Money(row["amount_minor"], row["currency"]),
        at=row["at"],
        charged=(
            Money(row["charged_minor"], row["charged_currency"])
            if row["charged_currency"] is not None
            else None
        ),
        response_code=row["response_code"] or "",
        response_message=row["response_message"] or "",
    )


def _conflict(row: Mapping[str, Any]) -> ConflictNote:
    return ConflictNote(
        tran_ref=row["tran_ref"],
        tran_type=TranType(row["tran_type"]),
        reported_status=GatewayStatus(row["reported_status"]) if row["reported_status"] else None,
        state=PaymentState(row["state"]),
        source=ResultSource(row["source"]),
        at=row["at"],
        reason=row["reason"],
    )
