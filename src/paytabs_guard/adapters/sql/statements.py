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
from sqlalchemy.engine import Connection
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


def count_forever(engine: AsyncEngine) -> StatementCount:
    """Count for the engine's lifetime (the load benchmark reads the totals from metrics)."""
    count = StatementCount()
    _attach(engine, count, keep_texts=False)
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
    engine: AsyncEngine, count: StatementCount, *, keep_texts: bool
) -> list[tuple[Any, str, Callable[..., None]]]:
    sync_engine = engine.sync_engine
    is_sqlite = sync_engine.dialect.name == "sqlite"

    def on_execute(
        _conn: Connection, _cursor: object, statement: str, _params: object, _c: object, many: bool
    ) -> None:
        text = " ".join(statement.split())
        count.round_trips += 1
        if text.upper().startswith(_TRANSACTION_CONTROL):
            if keep_texts:
                count.texts.append(text[:60])
            return
        count.statements += 1
        if keep_texts:
            count.texts.append(("executemany " if many else "") + text[:60])

    def on_begin(_conn: Connection) -> None:
        # SQLite's BEGIN IMMEDIATE goes through ``exec_driver_sql`` and is counted above.
        if not is_sqlite:
            count.round_trips += 1
            if keep_texts:
                count.texts.append("BEGIN")

    def on_end(_conn: Connection) -> None:
        count.round_trips += 1
        if keep_texts:
            count.texts.append("COMMIT/ROLLBACK")

    def on_checkout(*_args: object) -> None:
        if sync_engine.pool._pre_ping:
            count.round_trips += 1
            if keep_texts:
                count.texts.append("pre-ping")

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (sync_engine, "before_cursor_execute", on_execute),
        (sync_engine, "begin", on_begin),
        (sync_engine, "commit", on_end),
        (sync_engine, "rollback", on_end),
        (sync_engine.pool, "checkout", on_checkout),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    return listeners
