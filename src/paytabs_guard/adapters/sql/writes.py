"""How a unit of work's writes reach the database at commit: statement by statement, or on
PostgreSQL as one statement.

Each payment's writes hang off a *gate*: its ``INSERT`` into ``payments`` or its version-checked
``UPDATE``. Its child rows (cart ids, history, gateway transactions, conflict notes) are written
only if the gate matched a row; the outbox rows and the stored idempotency answer follow.

* ``ImmediateWrites`` (SQLite, where a "round trip" is a hand-off to aiosqlite's thread) runs
  each write as its own statement, with statement objects built once and executed with
  parameters (SQLAlchemy finds their compiled form by a memoized cache key).
* ``CombinedWrites`` (PostgreSQL) sends them as the data-modifying CTEs of one statement: one
  round trip for the whole commit. The child inserts select their values ``WHERE EXISTS
  (SELECT 1 FROM gate)``, so a stale version writes nothing and is reported as
  ``ConcurrentUpdate`` (not as a duplicate key on the history). PostgreSQL runs every
  sub-statement to completion on one snapshot and checks foreign keys at the end of the
  statement, so children may reference the payment inserted beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from sqlalchemy import (
    CTE,
    Exists,
    Table,
    bindparam,
    delete,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from .engine import upsert
from .errors import ConcurrentUpdate
from .tables import gateway_transactions, idempotency_keys, payments

Row = Mapping[str, Any]


class Writes(Protocol):
    """Where a commit's writes go; ``finish`` makes sure every one reached the database."""

    async def insert_payment(self, payment_id: str, row: Row) -> None: ...

    async def update_payment(self, payment_id: str, version: int, values: Row) -> None:
        """``values`` (without ``id``) if the row still holds ``version``, else nothing is
        written for this payment and ``finish`` (or this call) raises ConcurrentUpdate."""
        ...

    async def insert_children(self, payment_id: str, table: Table, rows: Sequence[Row]) -> None: ...

    async def update_transaction(self, payment_id: str, tran_ref: str, values: Row) -> None: ...

    async def delete_transactions(self, payment_id: str, tran_refs: Sequence[str]) -> None: ...

    async def insert_events(self, table: Table, rows: Sequence[Row]) -> None:
        """Outbox rows; an ``event_id`` already stored is skipped (ON CONFLICT DO NOTHING)."""
        ...

    async def complete_key(self, scope: str, key: str, values: Row) -> None:
        """Store an idempotency key's answer (no row: nothing to do)."""
        ...

    async def finish(self) -> None: ...


def writes_for(connection: AsyncConnection) -> Writes:
    if connection.dialect.name == "postgresql":
        return CombinedWrites(connection)
    return ImmediateWrites(connection)


_INSERT_PAYMENT: Final = payments.insert()
_UPDATE_PAYMENT: Final = update(payments).where(
    payments.c.id == bindparam("b_id"), payments.c.version == bindparam("b_version")
)
_UPDATE_TRANSACTION: Final = update(gateway_transactions).where(
    gateway_transactions.c.tran_ref == bindparam("b_tran_ref"),
    gateway_transactions.c.payment_id == bindparam("b_payment_id"),
)
_COMPLETE_KEY: Final = update(idempotency_keys).where(
    idempotency_keys.c.scope == bindparam("b_scope"),
    idempotency_keys.c.key == bindparam("b_key"),
)


class ImmediateWrites:
    """Each write as its own statement, now."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def insert_payment(self, payment_id: str, row: Row) -> None:  # noqa: ARG002 - Writes
        await self._connection.execute(_INSERT_PAYMENT, dict(row))

    async def update_payment(self, payment_id: str, version: int, values: Row) -> None:
        params = {**values, "b_id": payment_id, "b_version": version}
        result = await self._connection.execute(_UPDATE_PAYMENT, params)
        if result.rowcount != 1:
            raise ConcurrentUpdate(payment_id, version)

    async def insert_children(
        self,
        payment_id: str,  # noqa: ARG002 - the Writes signature; every write here runs at once
        table: Table,
        rows: Sequence[Row],
    ) -> None:
        if rows:
            await self._connection.execute(_insert_into(table), [dict(row) for row in rows])

    async def update_transaction(self, payment_id: str, tran_ref: str, values: Row) -> None:
        params = {**values, "b_tran_ref": tran_ref, "b_payment_id": payment_id}
        await self._connection.execute(_UPDATE_TRANSACTION, params)

    async def delete_transactions(self, payment_id: str, tran_refs: Sequence[str]) -> None:
        await self._connection.execute(_delete_transactions(payment_id, tran_refs))

    async def insert_events(self, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            statement = upsert(self._connection.dialect, table).on_conflict_do_nothing(
                index_elements=[table.c.event_id]
            )
            await self._connection.execute(statement, [dict(row) for row in rows])

    async def complete_key(self, scope: str, key: str, values: Row) -> None:
        await self._connection.execute(_COMPLETE_KEY, {**values, "b_scope": scope, "b_key": key})

    async def finish(self) -> None:
        return None


_INSERTS: dict[Table, Any] = {}


def _insert_into(table: Table) -> Any:
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = table.insert()
    return statement


def _delete_transactions(payment_id: str, tran_refs: Sequence[str]) -> Any:
    return delete(gateway_transactions).where(
        gateway_transactions.c.payment_id == payment_id,
        gateway_transactions.c.tran_ref.in_(list(tran_refs)),
    )


def _rows_as_select(
    table: Table, rows: Sequence[Row], only_if: Exists | None
) -> tuple[list[str], Any]:
    """``rows`` as ``SELECT <typed literals> [WHERE only_if] UNION ALL …``, for an
    ``INSERT … SELECT``."""
    columns = list(rows[0])
    selects = []
    for row in rows:
        one = select(*(literal(row[name], table.c[name].type).label(name) for name in columns))
        selects.append(one if only_if is None else one.where(only_if))
    return columns, selects[0] if len(selects) == 1 else union_all(*selects)


class CombinedWrites:
    """Every write of the commit as one PostgreSQL statement of data-modifying CTEs."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._gates: dict[str, tuple[int, CTE, Exists]] = {}
        self._ctes: list[CTE] = []

    def _add(self, statement: Any) -> CTE:
        cte: CTE = statement.cte(f"w{len(self._ctes)}")
        self._ctes.append(cte)
        return cte

    def _gate(self, payment_id: str, version: int, statement: Any) -> None:
        cte = self._add(statement.returning(payments.c.id))
        self._gates[payment_id] = (version, cte, select(literal(1)).select_from(cte).exists())

    def _opened(self, payment_id: str) -> Exists:
        return self._gates[payment_id][2]

    async def insert_payment(self, payment_id: str, row: Row) -> None:
        self._gate(payment_id, 0, payments.insert().values(**row))

    async def update_payment(self, payment_id: str, version: int, values: Row) -> None:
        statement = (
            update(payments)
            .where(payments.c.id == payment_id, payments.c.version == version)
            .values(**values)
        )
        self._gate(payment_id, version, statement)

    async def insert_children(self, payment_id: str, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            columns, source = _rows_as_select(table, rows, self._opened(payment_id))
            self._add(table.insert().from_select(columns, source))

    async def update_transaction(self, payment_id: str, tran_ref: str, values: Row) -> None:
        statement = (
            update(gateway_transactions)
            .where(
                gateway_transactions.c.tran_ref == tran_ref,
                gateway_transactions.c.payment_id == payment_id,
                self._opened(payment_id),
            )
            .values(**values)
        )
        self._add(statement)

    async def delete_transactions(self, payment_id: str, tran_refs: Sequence[str]) -> None:
        self._add(_delete_transactions(payment_id, tran_refs).where(self._opened(payment_id)))

    async def insert_events(self, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            # (a multi-row .values([...]) would make the statement uncacheable: compiled anew
            # on every commit; SELECTs of typed literals keep one compiled form per row count)
            columns, source = _rows_as_select(table, rows, None)
            statement = (
                postgresql.insert(table)
                .from_select(columns, source)
                .on_conflict_do_nothing(index_elements=[table.c.event_id])
            )
            self._add(statement)

    async def complete_key(self, scope: str, key: str, values: Row) -> None:
        statement = (
            update(idempotency_keys)
            .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            .values(**values)
        )
        self._add(statement)

    async def finish(self) -> None:
        if not self._ctes:
            return
        gates = list(self._gates.items())
        counts = [
            select(func.count()).select_from(cte).scalar_subquery().label(f"g{n}")
            for n, (_, (_, cte, _)) in enumerate(gates)
        ]
        combined = select(*(counts or [literal(0).label("g")])).add_cte(*self._ctes)
        row = (await self._connection.execute(combined)).one()
        for (payment_id, (version, _, _)), matched in zip(gates, row, strict=False):
            if matched != 1:
                raise ConcurrentUpdate(payment_id, version)
