"""How a unit of work's writes reach the database at commit: statement by statement, or on
PostgreSQL as one statement.

Each payment's writes hang off a *gate*: its ``INSERT`` into ``payments`` or its version-checked
``UPDATE``. Its child rows (cart ids, history, gateway transactions, conflict notes) are written
only if the gate matched a row; the outbox rows and the stored idempotency answer follow.

* ``BatchedWrites`` (SQLite, where a "round trip" is a hand-off to aiosqlite's thread) runs
  each write as its own statement, and sends them all to that thread in one hand-off at
  ``finish``: the statements are compiled once, their values bound by the columns' types.
* ``CombinedWrites`` (PostgreSQL) sends them as the data-modifying CTEs of one statement: one
  round trip for the whole commit. Every write besides the gates (child rows, outbox rows, the
  idempotency answer) selects its values or finds its row ``WHERE EXISTS (SELECT 1 FROM
  gate)`` for every gate, so a stale version writes nothing and is reported as
  ``ConcurrentUpdate`` (not as a duplicate key on the history). PostgreSQL runs every
  sub-statement to completion on one snapshot and checks foreign keys at the end of the
  statement, so children may reference the payment inserted beside them. With at most one
  gate the statement is all or nothing by itself: a unit of work that read nothing before its
  commit sends it without ``BEGIN``/``COMMIT`` (``unit_of_work.py``). An idempotency claim sent
  with the commit (``claim_key``), or a webhook delivery recorded with it
  (``record_delivery``), comes before the gates: every write, the gates included, requires it
  to have inserted its row, and when it did not, the statement wrote nothing and ``finish``
  raises ``ClaimLost``. When the statement runs alone (autocommit) it goes on the asyncpg
  connection itself, past SQLAlchemy's execute (``compiled.py``).

The statement is built once per *shape* (which writes, columns and row counts) and the values
travel as bind parameters: building a dozen CTEs and their cache key cost more CPU than
running them.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

from sqlalchemy import (
    CTE,
    Exists,
    Table,
    and_,
    bindparam,
    delete,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .compiled import MAX_SHAPES, compiled_for, fetch_one_alone
from .engine import upsert_for
from .errors import ConcurrentUpdate
from .idempotency import PendingClaim, claim_upsert
from .inbox import PendingDelivery, delivery_insert
from .sqlite_driver import BatchStatement, BatchStatementFailed, driver_of
from .statements import sent_together
from .tables import gateway_transactions, idempotency_keys, payments, webhook_inbox

Row = Mapping[str, Any]


class Writes(Protocol):
    """Where a commit's writes go; ``finish`` makes sure every one reached the database."""

    async def claim_key(self, claim: PendingClaim) -> None:
        """An idempotency claim every other write requires: when the key is another
        request's, nothing is written and ``finish`` raises ClaimLost."""
        ...

    async def record_delivery(self, delivery: PendingDelivery) -> None:
        """A webhook delivery's inbox row every other write requires: when the key is there
        already (a duplicate), nothing is written and ``finish`` raises ClaimLost."""
        ...

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
    return BatchedWrites(connection)


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


# Statements built once, so SQLAlchemy's compiled forms (PostgreSQL) and ``_sqlite_sql``'s
# (``compiled_for``) are found again by the same object.


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


def _typed(name: str, table: Table, column: str) -> Any:
    """A bind parameter typed as ``table.column`` (its type's bind processing applies, and
    PostgreSQL is told the type: it cannot infer one for a bare ``SELECT $1``)."""
    return bindparam(name, type_=table.c[column].type)


def _rows_as_select(
    table: Table, prefix: str, columns: Sequence[str], count: int, only_if: Exists | None
) -> Any:
    """``count`` rows of bind parameters ``{prefix}{row}_{column}`` as
    ``SELECT … [WHERE only_if] UNION ALL …``, for an ``INSERT … SELECT``."""
    selects = []
    for n in range(count):
        one = select(*(_typed(f"{prefix}{n}_{c}", table, c).label(c) for c in columns))
        selects.append(one if only_if is None else one.where(only_if))
    return selects[0] if count == 1 else union_all(*selects)


class _Op(NamedTuple):
    """One write of a commit as a shape; its values travel separately as bind parameters
    (``w{write}_{column}``, ``w{write}_{row}_{column}`` for rows, ``w{write}_b_…`` for what a
    ``WHERE`` compares: an update's values may set the very column its ``WHERE`` checks).

    ``gate`` is the index (among the commit's gates) of the payment write it hangs off, or -1.
    """

    kind: str
    table: Table
    gate: int
    columns: tuple[str, ...]
    rows: int


_STATEMENTS: dict[tuple[_Op, ...], Any] = {}
"""Statements kept by shape: a handful of shapes occur (create, page ready, callback, refund…);
the cap only bounds memory should something make shapes without end."""


def _combined(shape: tuple[_Op, ...]) -> Any:
    """The one statement for a commit of this shape, built once.

    Building a statement of a dozen CTEs and generating its cache key cost more CPU than
    executing it; a statement kept by shape has its cache key memoized, so each commit only
    binds its values. Parameter names are ``w{write}_…``, unique in the statement.
    """
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _build(shape)
        if len(_STATEMENTS) < MAX_SHAPES:
            _STATEMENTS[shape] = statement
    return statement


def _build(shape: Sequence[_Op]) -> Any:
    """The statement: the gates' CTEs first, then every other write, each of which also
    requires every gate to have matched (``opened``). So when a gate finds a stale version the
    statement writes nothing besides the other gates, and with one gate nothing at all: it can
    run without a transaction around it (``CombinedWrites.single_gate``)."""
    lock_ctes = _locks(shape)
    locked = [select(literal(1)).select_from(cte).exists() for cte in lock_ctes]
    claim_ctes: list[CTE] = []
    for n, (kind, table, _, columns, _) in enumerate(shape):
        if kind not in _CLAIMS:
            continue
        p = f"w{n}_"
        values = {c: _typed(p + c, table, c) for c in columns}
        base: Any = postgresql.insert(table)
        if locked:  # inserted only if every payment it guards is still at its version
            row = select(*(values[c].label(c) for c in columns)).where(*locked)
            base = base.from_select(list(columns), row)
        else:
            base = base.values(values)
        if kind == "claim_key":
            claim = claim_upsert(base, now=_typed(p + "b_now", table, "expires_at"))
        else:  # record_delivery
            claim = base.on_conflict_do_nothing()
        claim_ctes.append(claim.returning(table.c.key).cte(f"w{n}"))
    claimed = [select(literal(1)).select_from(cte).exists() for cte in claim_ctes]
    gate_ctes: list[CTE] = []
    for n, (kind, table, _, columns, _) in enumerate(shape):
        if kind not in _GATES:
            continue
        p = f"w{n}_"
        values = {c: _typed(p + c, table, c) for c in columns}
        gate: Any
        if kind == "insert_payment" and claimed:
            row = select(*(values[c].label(c) for c in columns)).where(*claimed)
            gate = table.insert().from_select(list(columns), row)
        elif kind == "insert_payment":
            gate = table.insert().values(values)
        else:
            gate = (
                update(table)
                .where(table.c.id == _typed(p + "b_id", table, "id"))
                .where(table.c.version == _typed(p + "b_version", table, "version"))
                .where(*claimed)
                .values(values)
            )
        gate_ctes.append(gate.returning(table.c.id).cte(f"w{n}"))
    exists = [select(literal(1)).select_from(cte).exists() for cte in gate_ctes]
    opened: Any = and_(*claimed, *exists) if claimed or exists else None
    ctes = [*lock_ctes, *claim_ctes, *gate_ctes]
    for n, (kind, table, _, columns, rows) in enumerate(shape):
        if kind in _GATES or kind in _CLAIMS:
            continue
        p = f"w{n}_"
        values = {c: _typed(p + c, table, c) for c in columns}
        statement: Any
        if kind == "insert_children":
            source = _rows_as_select(table, p, columns, rows, opened)
            statement = table.insert().from_select(columns, source)
        elif kind == "insert_events":
            source = _rows_as_select(table, p, columns, rows, opened)
            statement = (
                postgresql.insert(table)
                .from_select(columns, source)
                .on_conflict_do_nothing(index_elements=[table.c.event_id])
            )
        elif kind == "update_transaction":
            statement = (
                update(table)
                .where(
                    table.c.tran_ref == _typed(p + "b_tran_ref", table, "tran_ref"),
                    table.c.payment_id == _typed(p + "b_payment_id", table, "payment_id"),
                    opened,
                )
                .values(values)
            )
        elif kind == "delete_transactions":
            refs = [_typed(f"{p}b{i}", table, "tran_ref") for i in range(rows)]
            statement = delete(table).where(
                table.c.payment_id == _typed(p + "b_payment_id", table, "payment_id"),
                table.c.tran_ref.in_(refs),
                opened,
            )
        else:  # complete_key
            statement = update(table).where(
                table.c.scope == _typed(p + "b_scope", table, "scope"),
                table.c.key == _typed(p + "b_key", table, "key"),
            )
            if opened is not None:
                statement = statement.where(opened)
            statement = statement.values(values)
        ctes.append(statement.cte(f"w{n}"))
    counts = [
        select(func.count()).select_from(cte).scalar_subquery().label(f"g{n}")
        for n, cte in enumerate(gate_ctes)
    ]
    counts += [  # after the gates' counts, which ``finish`` reads by position
        select(func.count()).select_from(cte).scalar_subquery().label(f"c{n}")
        for n, cte in enumerate(claim_ctes)
    ]
    counts += [  # then the locks' (one per updated payment, when there are claims)
        select(func.count()).select_from(cte).scalar_subquery().label(f"l{n}")
        for n, cte in enumerate(lock_ctes)
    ]
    return select(*(counts or [literal(0).label("g")])).add_cte(*ctes)


def _locks(shape: Sequence[_Op]) -> list[CTE]:
    """With a claim in the statement, each updated payment's row locked at its version first.

    A claim comes before the gates, which require it, so it cannot require the gates in turn:
    without this, a stale version would leave the claim's row written on its own (a callback's
    dedupe row without its effect). ``SELECT … FOR UPDATE`` waits for a concurrent writer and
    then checks the version on the row as that one left it, so the claims require the locks
    (nothing at all is written for a stale version), and the gates that follow cannot miss.
    """
    if not any(op.kind in _CLAIMS for op in shape):
        return []
    locks: list[CTE] = []
    for n, (kind, table, _, _, _) in enumerate(shape):
        if kind == "update_payment":
            p = f"w{n}_"
            lock = select(table.c.id).where(
                table.c.id == _typed(p + "b_id", table, "id"),
                table.c.version == _typed(p + "b_version", table, "version"),
            )
            locks.append(lock.with_for_update().cte(f"l{n}"))
    return locks


_GATES: Final = frozenset({"insert_payment", "update_payment"})
_CLAIMS: Final = frozenset({"claim_key", "record_delivery"})


class ClaimLost(Exception):
    """The commit's idempotency claim found its key held by another request, or the delivery
    it records was recorded before: nothing was written."""

    def __init__(self, claim: PendingClaim | PendingDelivery) -> None:
        super().__init__(f"key {claim.key!r} is taken")
        self.claim = claim


class CombinedWrites:
    """Every write of the commit as one PostgreSQL statement of data-modifying CTEs."""

    def __init__(self, connection: AsyncConnection | None = None) -> None:
        self._connection = connection  # None: given to ``finish``
        self._gates: dict[str, tuple[int, int]] = {}  # payment id: (gate index, version)
        self._ops: list[_Op] = []
        self._params: dict[str, Any] = {}
        self._claims: list[PendingClaim | PendingDelivery] = []
        self._updates: list[tuple[str, int]] = []  # (payment id, version), in the ops' order

    def _add(self, kind: str, table: Table, gate: int, columns: Sequence[str], rows: int) -> str:
        prefix = f"w{len(self._ops)}_"
        self._ops.append(_Op(kind, table, gate, tuple(columns), rows))
        return prefix

    def _gate(self, payment_id: str) -> int:
        return self._gates[payment_id][0]

    def _set(self, prefix: str, values: Row) -> None:
        params = self._params
        for name, value in values.items():
            params[prefix + name] = value

    def _rows(self, prefix: str, rows: Sequence[Row], columns: Sequence[str]) -> None:
        params = self._params
        for n, row in enumerate(rows):
            for name in columns:
                params[f"{prefix}{n}_{name}"] = row[name]

    async def insert_payment(self, payment_id: str, row: Row) -> None:
        self._gates[payment_id] = (len(self._gates), 0)
        self._set(self._add("insert_payment", payments, -1, list(row), 1), row)

    async def update_payment(self, payment_id: str, version: int, values: Row) -> None:
        self._gates[payment_id] = (len(self._gates), version)
        self._updates.append((payment_id, version))
        prefix = self._add("update_payment", payments, -1, list(values), 1)
        self._set(prefix, values)
        self._params[prefix + "b_id"] = payment_id
        self._params[prefix + "b_version"] = version

    async def insert_children(self, payment_id: str, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            columns = list(rows[0])
            prefix = self._add("insert_children", table, self._gate(payment_id), columns, len(rows))
            self._rows(prefix, rows, columns)

    async def update_transaction(self, payment_id: str, tran_ref: str, values: Row) -> None:
        gate = self._gate(payment_id)
        prefix = self._add("update_transaction", gateway_transactions, gate, list(values), 1)
        self._set(prefix, values)
        self._params[prefix + "b_tran_ref"] = tran_ref
        self._params[prefix + "b_payment_id"] = payment_id

    async def delete_transactions(self, payment_id: str, tran_refs: Sequence[str]) -> None:
        gate = self._gate(payment_id)
        prefix = self._add("delete_transactions", gateway_transactions, gate, (), len(tran_refs))
        self._params[prefix + "b_payment_id"] = payment_id
        for n, tran_ref in enumerate(tran_refs):
            self._params[f"{prefix}b{n}"] = tran_ref

    async def insert_events(self, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            columns = list(rows[0])
            prefix = self._add("insert_events", table, -1, columns, len(rows))
            self._rows(prefix, rows, columns)

    async def complete_key(self, scope: str, key: str, values: Row) -> None:
        prefix = self._add("complete_key", idempotency_keys, -1, list(values), 1)
        self._set(prefix, values)
        self._params[prefix + "b_scope"] = scope
        self._params[prefix + "b_key"] = key

    async def claim_key(self, claim: PendingClaim) -> None:
        """The idempotency claim every other write of the statement requires."""
        prefix = self._add("claim_key", idempotency_keys, -1, list(claim.values), 1)
        self._set(prefix, claim.values)
        self._params[prefix + "b_now"] = claim.now
        self._claims.append(claim)

    async def record_delivery(self, delivery: PendingDelivery) -> None:
        """The delivery's inbox row, which every other write of the statement requires."""
        values = delivery.values
        self._set(self._add("record_delivery", webhook_inbox, -1, list(values), 1), values)
        self._claims.append(delivery)

    @property
    def single_gate(self) -> bool:
        """Whether at most one payment is written: then the statement is all or nothing on its
        own (see ``_build``), and needs no transaction unless the unit of work read first."""
        return len(self._gates) <= 1

    async def finish(self, connection: AsyncConnection | None = None) -> None:
        """Send the statement, on ``connection`` or the one given at construction."""
        if not self._ops:
            return
        connection = connection or self._connection
        if connection is None:
            raise RuntimeError("CombinedWrites.finish needs a connection")
        statement = _combined(tuple(self._ops))
        self._check((await connection.execute(statement, self._params)).one())

    async def finish_alone(self, engine: AsyncEngine) -> None:
        """Send the statement on its own, without a transaction (it must be all or nothing by
        itself: ``single_gate``), on a connection of ``engine``'s pool and past SQLAlchemy's
        execute (``compiled.py``)."""
        if self._ops:
            self._check(await fetch_one_alone(engine, _combined(tuple(self._ops)), self._params))

    def _check(self, row: Sequence[Any]) -> None:
        """Raise what the statement's answer says went wrong: a lost claim, a stale version."""
        gates, claims = len(self._gates), len(self._claims)
        if claims:  # a stale version first: it kept the claims from writing (``_locks``)
            locks = row[gates + claims :]
            for (payment_id, version), locked in zip(self._updates, locks, strict=True):
                if locked != 1:
                    raise ConcurrentUpdate(payment_id, version)
        for claim, claimed in zip(self._claims, row[gates : gates + claims], strict=True):
            if claimed != 1:  # then no gate wrote either
                raise ClaimLost(claim)
        for (payment_id, (_, version)), matched in zip(self._gates.items(), row, strict=False):
            if matched != 1:
                raise ConcurrentUpdate(payment_id, version)
