"""aiosqlite with one hand-off to its thread per statement instead of three or four.

aiosqlite runs every sqlite3 call on a thread of its own, and SQLAlchemy's adapter makes one
call per DB-API step: open a cursor, execute, fetch the rows, close the cursor. Each call is
a hand-off between the event loop and that thread (a queue put, a thread wake-up, a
``call_soon_threadsafe`` and a loop wake-up), and each costs more CPU than a small SQLite
statement itself. A SQLite create made about forty of them.

:class:`OneTripConnection` is aiosqlite's connection with one change: its cursors do all of a
statement's steps in one call on the thread (open, execute, fetch every row, note the
description, row count and last row id, close) and answer the rest from what they brought
back. SQLAlchemy's adapter fetches every row of a statement at once anyway (we use no
server-side cursors), so nothing is held longer than before. ``commit``, ``rollback`` and
everything else are aiosqlite's own, and SQLAlchemy sees the same DB-API it always did, so
its events (the statement budget counts them) and error translation are unchanged.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import aiosqlite

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_T = TypeVar("_T")
_Description = tuple[tuple[str, None, None, None, None, None, None], ...] | None


class _Outcome:
    """What one statement left on its cursor, brought back from the thread."""

    __slots__ = ("description", "lastrowid", "rowcount", "rows")

    def __init__(
        self, description: _Description, rowcount: int, lastrowid: int | None, rows: deque[Any]
    ) -> None:
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.rows = rows


def _nothing() -> _Outcome:
    return _Outcome(None, -1, None, deque())


def _statement(connection: sqlite3.Connection, run: Callable[[sqlite3.Cursor], object]) -> _Outcome:
    """On the connection's thread: open a cursor, ``run`` the statement on it, bring back
    everything it left, close it."""
    cursor = connection.cursor()
    try:
        run(cursor)
        description = cursor.description
        rows = deque(cursor.fetchall()) if description is not None else deque()
        return _Outcome(description, cursor.rowcount, cursor.lastrowid, rows)
    finally:
        cursor.close()


class OneTripCursor:
    """The cursor SQLAlchemy's adapter drives; one thread hand-off per ``execute``."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._outcome = _nothing()
        self.arraysize = 1

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> OneTripCursor:
        values = () if parameters is None else parameters
        return await self._run(lambda cursor: cursor.execute(sql, values))

    async def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> OneTripCursor:
        return await self._run(lambda cursor: cursor.executemany(sql, parameters))

    async def _run(self, run: Callable[[sqlite3.Cursor], object]) -> OneTripCursor:
        connection = self._connection
        raw = connection.raw
        self._outcome = await connection.in_transaction_on_thread(lambda: _statement(raw, run))
        return self

    async def fetchone(self) -> Any:
        rows = self._outcome.rows
        return rows.popleft() if rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._outcome.rows
        count = self.arraysize if size is None else size
        return [rows.popleft() for _ in islice(range(count), len(rows))]

    async def fetchall(self) -> list[Any]:
        rows = list(self._outcome.rows)
        self._outcome.rows.clear()
        return rows

    async def close(self) -> None:
        # Like a closed sqlite3 cursor: the rows go, the counts stay readable (SQLAlchemy
        # closes a cursor that returned no rows before it reads rowcount or lastrowid).
        self._outcome.rows.clear()

    @property
    def description(self) -> _Description:
        return self._outcome.description

    @property
    def rowcount(self) -> int:
        return self._outcome.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._outcome.lastrowid


class _CursorStart:
    """What ``connection.cursor()`` returns: awaitable and an async context manager, like
    aiosqlite's, but making the cursor costs no hand-off (it opens one per statement)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: OneTripCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Generator[Any, None, OneTripCursor]:
        return self._ready().__await__()

    async def _ready(self) -> OneTripCursor:
        return self._cursor

    async def __aenter__(self) -> OneTripCursor:
        return self._cursor

    async def __aexit__(self, *_exc: object) -> None:
        await self._cursor.close()


class BatchStatement(NamedTuple):
    """One statement of :meth:`OneTripConnection.run_batch`."""

    sql: str
    parameters: Sequence[Any]
    """The values, or with ``many`` a sequence of rows of values (``executemany``)."""
    many: bool = False
    expect_one: bool = False
    """Stop the batch here unless the statement changed exactly one row (a version check)."""


class BatchStatementFailed(Exception):
    """Statement ``index`` of a batch raised ``error`` (the sqlite3 error is the cause); the
    statements before it ran, the ones after it did not."""

    def __init__(self, index: int, error: sqlite3.Error) -> None:
        super().__init__(f"statement {index} of the batch failed: {error}")
        self.index = index
        self.error = error


def _batch(
    connection: sqlite3.Connection, statements: Sequence[BatchStatement], commit: bool
) -> int:
    """On the connection's thread: the statements in order, then the commit if asked; the
    index of the first statement whose row count missed its ``expect_one`` (the rest not run,
    nothing committed), or -1."""
    cursor = connection.cursor()
    try:
        for index, statement in enumerate(statements):
            try:
                if statement.many:
                    cursor.executemany(statement.sql, statement.parameters)
                else:
                    cursor.execute(statement.sql, statement.parameters)
            except sqlite3.Error as error:
                raise BatchStatementFailed(index, error) from error
            if statement.expect_one and cursor.rowcount != 1:
                return index
    finally:
        cursor.close()
    if commit:
        connection.commit()
    return -1


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors make one hand-off per statement."""

    _pending_begin: str | None = None
    _stopping: asyncio.Future[Any] | None = None

    def stop(self) -> asyncio.Future[Any] | None:
        """Ask the thread to close the connection and end, once.

        aiosqlite's ``close()`` calls ``stop()`` when its own close has run, and waits for
        the thread to answer. When SQLAlchemy force-closed the connection in between (a
        cancellation while it was closing it gracefully), the thread had already ended on the
        first stop and nobody answered the second: ``close()`` waited forever, and so did
        whatever awaited it (an event loop shutting down). A second stop now waits for
        nothing: the first one already ends the thread after everything queued before it."""
        if self._stopping is not None:
            return None
        self._stopping = super().stop()
        return self._stopping

    def cursor(self) -> _CursorStart:  # type: ignore[override]  # same protocol, no hand-off
        return _CursorStart(OneTripCursor(self))

    def defer_begin(self, statement: str = "BEGIN IMMEDIATE") -> None:
        """Begin a transaction with ``statement``, run on the thread right before the next
        statement or batch, in its hand-off. Its errors (``database is locked``) are that
        statement's errors: nothing of it ran."""
        self._pending_begin = statement

    async def commit(self) -> None:
        """Commit, if a transaction is open (one whose begin is still pending ran nothing)."""
        self._pending_begin = None
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().commit()

    async def rollback(self) -> None:
        """Roll back, if a transaction is open. The pool "resets" every connection given back
        to it with a rollback, after every commit too; with nothing open that is a hand-off
        for nothing. (No statement of this connection is running now: its holder awaits
        each one, so reading the flag here is safe.)"""
        self._pending_begin = None
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()

    async def run_batch(self, statements: Sequence[BatchStatement], *, commit: bool = False) -> int:
        """Run ``statements`` in order in one hand-off, in the open (or pending) transaction,
        and with ``commit`` commit it in the same hand-off once every one ran.

        Returns -1 when every one ran, else the index of the first statement whose
        ``expect_one`` was not met (the ones after it did not run). A statement that fails
        raises :class:`BatchStatementFailed`; a failed commit raises its sqlite3 error. In
        those cases nothing was committed: what ran stays in the transaction for the caller
        to roll back."""
        raw = self.raw
        return await self.in_transaction_on_thread(lambda: _batch(raw, statements, commit))

    def in_transaction_on_thread(self, function: Callable[[], _T]) -> Awaitable[_T]:
        """:meth:`on_thread`, with a pending begin run first."""
        begin, self._pending_begin = self._pending_begin, None
        if begin is None:
            return self.on_thread(function)
        raw = self.raw

        def begun() -> _T:
            raw.execute(begin)
            return function()

        return self.on_thread(begun)

    @property
    def raw(self) -> sqlite3.Connection:
        """The sqlite3 connection; only for functions run by :meth:`on_thread`."""
        return self._conn

    def on_thread(self, function: Callable[[], _T]) -> Awaitable[_T]:
        """Run ``function`` on the connection's thread, where its statements run (one at a
        time, in the order they were handed over)."""
        return cast("Awaitable[_T]", self._execute(function))  # type: ignore[no-untyped-call]


def driver_of(connection: Connection) -> OneTripConnection:
    """The :class:`OneTripConnection` under a SQLAlchemy connection of a SQLite engine
    (``create_engine`` opens every one of them with :func:`one_trip_connector`)."""
    driver = connection.connection.driver_connection
    if not isinstance(driver, OneTripConnection):
        raise TypeError(f"expected a OneTripConnection, got {type(driver).__name__}")
    return driver


def one_trip_connector(
    args: Sequence[Any],
    kwargs: dict[str, Any],
    *,
    prepare: Callable[[sqlite3.Connection], object] | None = None,
) -> Callable[[], Awaitable[OneTripConnection]]:
    """An ``async_creator`` for SQLAlchemy: ``sqlite3.connect(*args, **kwargs)`` on a new
    :class:`OneTripConnection`'s thread, then ``prepare`` on the new connection, there too."""

    def open_connection() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(*args, **kwargs)
        if prepare is not None:
            try:
                prepare(connection)
            except BaseException:
                connection.close()
                raise
        return connection

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(open_connection, 64)
        # As SQLAlchemy does for aiosqlite: the thread must not keep the process alive.
        connection._thread.daemon = True
        try:
            await connection  # starts the thread and opens the file on it
        except Exception:
            # aiosqlite stopped the thread; let it finish before the error leaves, so it does
            # not answer later to an event loop that may be closed by then.
            if connection._stopping is not None:
                await connection._stopping
            raise
        return connection

    return connect
