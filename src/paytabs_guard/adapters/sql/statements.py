"""Counting what a piece of work costs the database: statements and round trips.

The statement budget (docs/storage.md) is checked with this, and ``bench load`` reports it per
operation. A *statement* is one ``execute`` or ``executemany`` of SQL (transaction control
excluded); a *round trip* is one wait for the server: every statement, plus ``BEGIN`` and
``COMMIT``/``ROLLBACK`` where they reach the server on their own, plus a pool pre-ping per
checkout when the engine pings. On PostgreSQL asyncpg sends ``BEGIN`` with the first
statement's turn and ``COMMIT`` as its own. On SQLite "the server" is aiosqlite's thread:
``BEGIN IMMEDIATE`` goes with the first statement (``sqlite_driver.py``), ``COMMIT`` and
``ROLLBACK`` go on their own when a transaction is open, and a batch of statements sent
together (a commit's writes, ``batched_writes.py``) is one round trip: :func:`sent_together` counts
it, since it does not pass through SQLAlchemy's execute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .sqlite_driver import driver_of

_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@dataclass(slots=True)
class StatementCount:
    """Running totals; ``texts`` keeps the statements' first words, for a readable failure."""

    statements: int = 0
    round_trips: int = 0
    texts: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.statements = 0
        self.round_trips = 0
        self.texts.clear()

    def describe(self) -> str:
        lines = "\n  ".join(self.texts)
        return f"{self.statements} statements, {self.round_trips} round trips:\n  {lines}"


_BATCH_COUNTS: list[tuple[object, StatementCount, bool]] = []
"""Who counts batches: (the sync engine, or ``Engine`` for every engine; the count; whether
it keeps texts)."""


def sent_together(
    sender: AsyncConnection | AsyncEngine, statements: Sequence[tuple[str, bool]]
) -> None:
    """Count ``statements`` ((SQL, executemany?) each) sent to the database in one round trip
    by ``sender`` (a connection, or an engine's pooled connection), without SQLAlchemy's
    execute, so without its events."""
    engine = sender.sync_engine
    for target, count, keep_texts in _BATCH_COUNTS:
        if target is not Engine and target is not engine:
            continue
        count.round_trips += 1
        count.statements += len(statements)
        if keep_texts:
            for n, (sql, many) in enumerate(statements, start=1):
                head = ("executemany " if many else "") + " ".join(sql[:200].split())[:60]
                count.texts.append(f"[batch {n}/{len(statements)}] {head}")


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[StatementCount]:
    """Count everything ``engine`` sends while the block runs (all tasks, all connections)."""
    count = StatementCount()
    with _listening(engine, count):
        yield count


def count_every_engine() -> StatementCount:
    """Count what every engine of this process sends, from now on (the load benchmark's
    service workers: their engine is built later, inside the app's lifespan)."""
    count = StatementCount()
    _attach(Engine, count, keep_texts=False)
    return count


@contextmanager
def _listening(engine: AsyncEngine, count: StatementCount) -> Iterator[None]:
    listeners = _attach(engine, count, keep_texts=True)
    try:
        yield
    finally:
        _detach(listeners, count)


def _attach(
    engine: AsyncEngine | type[Engine], count: StatementCount, *, keep_texts: bool
) -> list[tuple[Any, str, Callable[..., None]]]:
    target: Any = engine if isinstance(engine, type) else engine.sync_engine

    def on_execute(
        _conn: Connection, _cursor: object, statement: str, _params: object, _c: object, many: bool
    ) -> None:
        # Only the head is looked at: the benchmark's workers count every statement, and
        # normalising a whole statement of a dozen CTEs cost them CPU on every commit.
        head = " ".join(statement[:200].split())
        count.round_trips += 1
        if head.upper().startswith(_TRANSACTION_CONTROL):
            if keep_texts:
                count.texts.append(head[:60])
            return
        count.statements += 1
        if keep_texts:
            count.texts.append(("executemany " if many else "") + head[:60])

    def on_begin(conn: Connection) -> None:
        # SQLite's BEGIN IMMEDIATE goes with the transaction's first statement; an autocommit
        # connection's "transaction" never reaches the server.
        if conn.dialect.name != "sqlite" and not _autocommit(conn):
            count.round_trips += 1
            if keep_texts:
                count.texts.append("BEGIN")

    def on_end(conn: Connection) -> None:
        if _autocommit(conn) or not _reaches_the_server(conn):
            return
        count.round_trips += 1
        if keep_texts:
            count.texts.append("COMMIT/ROLLBACK")

    def on_checkout(*_args: object) -> None:
        if target.pool._pre_ping:
            count.round_trips += 1
            if keep_texts:
                count.texts.append("pre-ping")

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (target, "before_cursor_execute", on_execute),
        (target, "begin", on_begin),
        (target, "commit", on_end),
        (target, "rollback", on_end),
    ]
    if not isinstance(engine, type):
        listeners.append((target.pool, "checkout", on_checkout))
    for source, name, listener in listeners:
        event.listen(source, name, listener)
    _BATCH_COUNTS.append((target, count, keep_texts))
    return listeners


def _detach(listeners: list[tuple[Any, str, Callable[..., None]]], count: StatementCount) -> None:
    for target, name, listener in listeners:
        event.remove(target, name, listener)
    _BATCH_COUNTS[:] = [entry for entry in _BATCH_COUNTS if entry[1] is not count]


def _reaches_the_server(conn: Connection) -> bool:
    """Whether ending ``conn``'s transaction is a round trip: on SQLite only if it ran
    something (its BEGIN waits for the first statement, see ``sqlite_driver.py``)."""
    if conn.dialect.name != "sqlite":
        return True
    if conn.invalidated:  # nothing to reach; and reading .connection would try to reconnect
        return False
    return bool(driver_of(conn).in_transaction)


def _autocommit(conn: Connection) -> bool:
    return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")
