"""Counting what a piece of work costs the database: statements and round trips.

The statement budget (docs/storage.md) is checked with this, and ``bench load`` reports it per
operation. A *statement* is one ``execute`` or ``executemany`` of SQL (transaction control
excluded); a *round trip* is one wait for the server: every statement, plus ``BEGIN`` and
``COMMIT``/``ROLLBACK`` where they reach the server (always on SQLite, where "the server" is
aiosqlite's thread; on PostgreSQL asyncpg sends ``BEGIN`` with the first statement's turn and
``COMMIT`` as its own), plus a pool pre-ping per checkout when the engine pings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

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
        for target, name, listener in listeners:
            event.remove(target, name, listener)


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
        # SQLite's BEGIN IMMEDIATE goes through ``exec_driver_sql`` and is counted above; an
        # autocommit connection's "transaction" never reaches the server.
        if conn.dialect.name != "sqlite" and not _autocommit(conn):
            count.round_trips += 1
            if keep_texts:
                count.texts.append("BEGIN")

    def on_end(conn: Connection) -> None:
        if _autocommit(conn):
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
    return listeners


def _autocommit(conn: Connection) -> bool:
    return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")
