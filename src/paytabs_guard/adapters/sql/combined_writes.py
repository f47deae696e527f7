"""PostgreSQL's commit writes: every write of a commit as the data-modifying CTEs of one
statement, one round trip (``CombinedWrites``; the interface is ``writes.Writes``).

Every write besides the gates (child rows, outbox rows, the idempotency answer) selects its
values or finds its row ``WHERE EXISTS (SELECT 1 FROM gate)`` for every gate, so a stale
version writes nothing and is reported as ``ConcurrentUpdate`` (not as a duplicate key on the
history). PostgreSQL runs every sub-statement to completion on one snapshot and checks foreign
keys at the end of the statement, so children may reference the payment inserted beside them.
With at most one gate the statement is all or nothing by itself: a unit of work that read
nothing before its commit sends it without ``BEGIN``/``COMMIT`` (``unit_of_work.py``). An
idempotency claim or a webhook delivery sent with the commit comes before the gates: every
write, the gates included, requires it to have inserted its row, and when it did not, the
statement wrote nothing and ``finish`` raises ``ClaimLost``. When the statement runs alone
(autocommit) it goes on the asyncpg connection itself, past SQLAlchemy's execute
(``compiled.py``).

The statement is built once per *shape* (which writes, columns and row counts) and the values
travel as bind parameters: building a dozen CTEs and their cache key cost more CPU than
running them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

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
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .compiled import MAX_SHAPES, fetch_one_alone
from .errors import ClaimLost, ConcurrentUpdate
from .idempotency import PendingClaim, claim_upsert
from .inbox import PendingDelivery
from .rows import Row
from .tables import gateway_transactions, idempotency_keys, payments, webhook_inbox


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
