"""SQLite's commit writes: each write its own statement, all sent to aiosqlite's thread in one
hand-off at ``finish`` (``BatchedWrites``; the interface is ``writes.Writes``).

The statements are compiled once and their values bound by the columns' types, as
SQLAlchemy's ``execute`` would bind them, without its per-call work.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Table, bindparam, delete, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from .compiled import compiled_for
from .engine import upsert_for
from .errors import ClaimLost, ConcurrentUpdate
from .idempotency import PendingClaim, claim_upsert
from .inbox import PendingDelivery, delivery_insert
from .rows import Row
from .sqlite_driver import BatchStatement, BatchStatementFailed, driver_of
from .statements import sent_together
from .tables import gateway_transactions, idempotency_keys, payments

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


class BatchedWrites:
    """SQLite: each write its own statement, all of them sent to aiosqlite's thread together
    by ``finish``, in one hand-off (with the transaction's ``BEGIN IMMEDIATE`` when nothing ran
    before them). A version check that finds no row stops the batch there: nothing after it
    runs, and ``finish`` raises ``ConcurrentUpdate`` (the unit of work then rolls back).

    SQLAlchemy compiles each statement once per dialect and set of columns (``compiled_for``);
    the values go through the columns' own bind processing, as SQLAlchemy's ``execute`` would
    send them. The statements are counted for the statement budget like any other
    (``statements.sent_together``)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._dialect = connection.dialect
        self._batch: list[BatchStatement] = []
        self._gates: dict[int, tuple[str, int]] = {}  # batch index: (payment id, version)
        self._claims: dict[int, PendingClaim | PendingDelivery] = {}  # batch index: the claim

    def _add(self, statement: Any, values: Row, *, expect_one: bool = False) -> None:
        compiled = compiled_for(self._dialect, statement, tuple(values))
        self._batch.append(BatchStatement(compiled.sql, compiled.bind(values), False, expect_one))

    def _add_rows(self, statement: Any, rows: Sequence[Row]) -> None:
        compiled = compiled_for(self._dialect, statement, tuple(rows[0]))
        if len(rows) == 1:
            self._batch.append(BatchStatement(compiled.sql, compiled.bind(rows[0])))
        else:
            values = [compiled.bind(row) for row in rows]
            self._batch.append(BatchStatement(compiled.sql, values, many=True))

    async def claim_key(self, claim: PendingClaim) -> None:
        """The idempotency claim; a batch stops there when it changed no row (the key is
        another request's), before any other write ran."""
        self._claims[len(self._batch)] = claim
        params = {**claim.values, "b_now": claim.now}
        self._add(_claim_sqlite(), params, expect_one=True)

    async def record_delivery(self, delivery: PendingDelivery) -> None:
        """The delivery's inbox row; like a claim, the batch stops there for a duplicate."""
        self._claims[len(self._batch)] = delivery
        self._add(delivery_insert("sqlite"), delivery.values, expect_one=True)

    async def insert_payment(self, payment_id: str, row: Row) -> None:  # noqa: ARG002 - Writes
        self._add(_INSERT_PAYMENT, row)

    async def update_payment(self, payment_id: str, version: int, values: Row) -> None:
        self._gates[len(self._batch)] = (payment_id, version)
        params = {**values, "b_id": payment_id, "b_version": version}
        self._add(_UPDATE_PAYMENT, params, expect_one=True)

    async def insert_children(
        self,
        payment_id: str,  # noqa: ARG002 - the Writes signature; the batch stops at a stale gate
        table: Table,
        rows: Sequence[Row],
    ) -> None:
        if rows:
            self._add_rows(_insert_into(table), rows)

    async def update_transaction(self, payment_id: str, tran_ref: str, values: Row) -> None:
        params = {**values, "b_tran_ref": tran_ref, "b_payment_id": payment_id}
        self._add(_UPDATE_TRANSACTION, params)

    async def delete_transactions(self, payment_id: str, tran_refs: Sequence[str]) -> None:
        params: dict[str, Any] = {"b_payment_id": payment_id}
        for n, tran_ref in enumerate(tran_refs):
            params[f"b{n}"] = tran_ref
        self._add(_delete_transactions(len(tran_refs)), params)

    async def insert_events(self, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            self._add_rows(_insert_events(table), rows)

    async def complete_key(self, scope: str, key: str, values: Row) -> None:
        self._add(_COMPLETE_KEY, {**values, "b_scope": scope, "b_key": key})

    async def finish(self, *, commit: bool = False) -> None:
        """Send the batch: one hand-off to the connection's thread. With ``commit``, the
        transaction commits in that hand-off too, once every write went through (the unit of
        work's own commit then finds nothing open and sends nothing). An empty batch sends
        nothing, not even the commit: that is left to the caller's own."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        connection = self._connection.sync_connection
        if connection is None:  # only before the async connection started; never here
            raise RuntimeError("BatchedWrites.finish on a connection that is not open")
        driver = driver_of(connection)
        sent_together(self._connection, [(s.sql, s.many) for s in batch])
        try:
            stopped = await driver.run_batch(batch, commit=commit)
        except BatchStatementFailed as failed:
            failing = batch[failed.index]
            raise self._translated(failing.sql, failing.parameters, failed.error) from failed.error
        except sqlite3.Error as error:
            # Around the statements: the pending BEGIN IMMEDIATE ("database is locked"), or
            # the commit (a full disk, an I/O error).
            sql = "BEGIN IMMEDIATE or COMMIT" if commit else "BEGIN IMMEDIATE"
            raise self._translated(sql, (), error) from error
        if stopped in self._claims:
            raise ClaimLost(self._claims[stopped])
        if stopped >= 0:
            raise ConcurrentUpdate(*self._gates[stopped])

    def _translated(self, sql: str, parameters: Any, error: sqlite3.Error) -> Exception:
        """The error SQLAlchemy would have raised for it (``IntegrityError``,
        ``OperationalError``…), so callers and the 503 mapping see no difference."""
        engine = self._connection.sync_engine
        return DBAPIError.instance(
            sql,
            parameters,
            error,
            sqlite3.Error,
            hide_parameters=engine.hide_parameters,
            dialect=self._dialect,
        )


# Statements built once, so ``compiled_for`` finds their compiled form again by the same object.


@functools.cache
def _insert_into(table: Table) -> Any:
    return table.insert()


@functools.cache
def _claim_sqlite() -> Any:
    return claim_upsert(upsert_for("sqlite", idempotency_keys))


@functools.lru_cache(maxsize=64)  # by count: a payment drops one or two records at a time
def _delete_transactions(count: int) -> Any:
    """Delete ``count`` of a payment's gateway transactions (``b_payment_id``, ``b0``…)."""
    table = gateway_transactions
    refs: list[Any] = [bindparam(f"b{n}") for n in range(count)]
    return delete(table).where(
        table.c.payment_id == bindparam("b_payment_id"), table.c.tran_ref.in_(refs)
    )


@functools.cache
def _insert_events(table: Table) -> Any:
    """Outbox rows on SQLite; an ``event_id`` stored before is skipped."""
    return upsert_for("sqlite", table).on_conflict_do_nothing(index_elements=[table.c.event_id])
