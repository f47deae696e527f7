"""Reading payments: the lookup and lock statements, and one query that loads a payment whole
(its ``payments`` row with every child row as a JSON array), decoded into ``Payment`` objects.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    bindparam,
    func,
    select,
    type_coerce,
)

from paytabs_guard.domain import Payment

from .payment_rows import (
    conflict_from_row,
    gateway_transaction_from_row,
    payment_from_row,
    transition_from_row,
)
from .tables import (
    UtcDateTime,
    gateway_transactions,
    payment_cart_ids,
    payment_conflicts,
    payment_transitions,
    payments,
)

_KEY: BindParameter[str] = bindparam("key")
_BY_REF: Final = payments.alias("by_ref")
_LOOKUPS: Final[dict[str, ColumnElement[bool]]] = {
    "id": payments.c.id == _KEY,
    "cart_id": payments.c.id
    == select(payment_cart_ids.c.payment_id)
    .where(payment_cart_ids.c.cart_id == _KEY)
    .scalar_subquery(),
    # Two index lookups, not ``tran_ref = :key OR id IN (...)``: no database answers that OR
    # from an index, and PostgreSQL read the whole payments table for every callback.
    "tran_ref": payments.c.id.in_(
        select(_BY_REF.c.id)
        .where(_BY_REF.c.tran_ref == _KEY)
        .union_all(
            select(gateway_transactions.c.payment_id).where(gateway_transactions.c.tran_ref == _KEY)
        )
    ),
}


@functools.cache
def lock_statement(by: str) -> Select[Any]:
    """PostgreSQL locks a payment with a statement of its own, before reading it whole. One
    statement would read the child rows (its subqueries) with the snapshot taken *before*
    waiting for the lock: after the wait it would see the payment row as the other transaction
    left it (PostgreSQL re-reads a locked row) but that transaction's history and gateway
    transactions not at all. The read after the lock takes a new snapshot (READ COMMITTED)."""
    return select(payments.c.id).where(_LOOKUPS[by]).with_for_update()


@functools.cache
def lookup_statement(dialect_name: str, by: str, for_update: bool) -> Select[Any]:
    """One statement object per lookup, built once: SQLAlchemy then finds its compiled form
    by a memoized cache key instead of building a statement and its key on every call."""
    statement = select_payments(dialect_name).where(_LOOKUPS[by])
    # Locked even for a payment already in the identity map: the lock is the point. SQLite
    # ignores FOR UPDATE; its transaction holds the database write lock.
    return statement.with_for_update(of=payments) if for_update else statement


_CHILDREN: Final = (
    ("cart_ids", payment_cart_ids, "attempt"),
    ("history", payment_transitions, "seq"),
    ("records", gateway_transactions, "seq"),
    ("conflicts", payment_conflicts, "id"),
)


def select_payments(dialect_name: str) -> Select[Any]:
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


def _child_rows(
    row: Mapping[Any, Any], name: str, table: Table, order: str
) -> list[dict[str, Any]]:
    """The child rows of ``table`` in ``row`` as column -> value maps, ordered by ``order``."""
    raw = row[f"_children_{name}"]
    items = json.loads(raw) if isinstance(raw, str) else raw or []
    shape = _shape(table)
    rows = []
    for item in items:
        child = {
            column: _instant(value) if instant and value is not None else value
            for (column, instant), value in zip(shape, item, strict=True)
        }
        rows.append(child)
    rows.sort(key=lambda child: child[order])
    return rows


@functools.cache
def _shape(table: Table) -> tuple[tuple[str, bool], ...]:
    """Per column of ``table``, in order: its name, and whether it holds an instant (sent as
    ISO text inside the JSON aggregate). Asked per value, the type check was most of the
    work of a payment's read."""
    return tuple((column.name, isinstance(column.type, UtcDateTime)) for column in table.c)


#: PostgreSQL's infinite instants, as its JSON aggregate writes them, read as asyncpg reads them
#: from a column: the last and first datetime. The transformer no longer lets such a time in
#: (``transformers._time``), but a row stored before that must still be readable.
_INFINITE: Final = {
    "infinity": datetime.max.replace(tzinfo=UTC),
    "-infinity": datetime.min.replace(tzinfo=UTC),
}


def _instant(text: str) -> datetime:
    infinite = _INFINITE.get(text)
    if infinite is not None:
        return infinite
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def build_payments(rows: Sequence[Mapping[Any, Any]]) -> list[tuple[Payment, int]]:
    """Payments from rows of :func:`select_payments`, each with the next free
    ``gateway_transactions.seq``."""
    built = []
    for row in rows:
        cart_ids, history, records, conflicts = (
            _child_rows(row, name, table, order) for name, table, order in _CHILDREN
        )
        payment = payment_from_row(
            row,
            cart_ids=[child["cart_id"] for child in cart_ids],
            history=[transition_from_row(child) for child in history],
            records=[gateway_transaction_from_row(child) for child in records],
            conflicts=[conflict_from_row(child) for child in conflicts],
        )
        next_seq = max((child["seq"] for child in records), default=-1) + 1
        built.append((payment, next_seq))
    return built
