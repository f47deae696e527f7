"""Engines for SQLite (the embedded default) and PostgreSQL, set up for short write transactions.

SQLite: every transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write lock
up front. A plain ``BEGIN`` reads first and upgrades on the first write, and an upgrade that
meets another writer fails at once with "database is locked" (SQLite does not wait there, to
avoid deadlocks). Taking the lock first makes concurrent writers queue on ``busy_timeout``
instead, and the writers of one process queue before that on an in-process ``WriterGate``, so
they sleep until their turn instead of polling the busy handler. WAL lets readers outside
these transactions go on while one writer works.

PostgreSQL: asyncpg; ``lock_timeout`` bounds how long a row lock is awaited, like
``busy_timeout`` on SQLite. No pre-ping on every checkout (a round trip per transaction): a
connection is pinged only when it sat idle in the pool for ``IDLE_PING_SECONDS`` (an idle
connection is the one a firewall or a failover cut), and a failed ping makes the pool retry
with a new connection. A connection that breaks while in use fails its request once, and
SQLAlchemy then recycles every connection older than the break. ``pool_recycle`` replaces
connections after 30 minutes anyway. asyncpg's prepared-statement cache (per connection) and
SQLAlchemy's compiled-statement cache stay on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Final

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import aiosqlite as sqlite_aiosqlite
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from .sqlite_driver import driver_of, one_trip_connector

#: Connections per engine (per worker), all kept open. No overflow beyond them: SQLAlchemy
#: closes an overflow connection as soon as it is returned, so under load, exactly when they
#: are needed, connections were opened and closed several times a second (bench load: a
#: new PostgreSQL backend every few creates, its fork and our connection set-up and
#: statement preparation each time). A request that finds all 20 busy waits for one.
DEFAULT_POOL_SIZE: Final = 20
DEFAULT_LOCK_TIMEOUT_SECONDS: Final = 15.0
#: PostgreSQL: how long any statement may wait for its answer. A network path that freezes
#: (packets dropped, the database host hung) would otherwise hold the request, and its pooled
#: connection, for as long as TCP takes to give up: many minutes. Longer than a lock wait, so
#: that a lock timeout keeps its own, clearer error.
DEFAULT_STATEMENT_TIMEOUT_SECONDS: Final = 20.0
IDLE_PING_SECONDS: Final = 30.0
RETURNED_AT: Final = "returned_at"
"""Where a pooled connection's record notes when it was last given back (time.monotonic)."""
PREPARED_STATEMENT_CACHE_SIZE: Final = 100


def create_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    echo: bool = False,
    idle_ping_seconds: float = IDLE_PING_SECONDS,
    statement_timeout_seconds: float | None = DEFAULT_STATEMENT_TIMEOUT_SECONDS,
) -> AsyncEngine:
    """An async engine for ``sqlite+aiosqlite:///file`` or ``postgresql+asyncpg://…``.

    ``lock_timeout_seconds`` is how long a transaction waits for a lock another one holds
    (SQLite's whole-database write lock, PostgreSQL's row locks) before it fails.
    ``statement_timeout_seconds`` (PostgreSQL) is how long a statement may wait for its answer
    (None: for ever, for migrations, whose index builds may take longer); the connection it
    timed out on is discarded. SQLite is a local file: its waits are the lock's.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername != "sqlite+aiosqlite":
            raise ValueError(f"use the sqlite+aiosqlite driver, not {parsed.drivername}")
        if parsed.database in (None, "", ":memory:"):
            # An in-memory database is one shared connection: concurrent units of work would
            # share (and roll back) one transaction.
            raise ValueError("SQLite needs a database file, not an in-memory database")
        return _sqlite_engine(url, pool_size, lock_timeout_seconds, echo)
    if backend == "postgresql":
        if parsed.drivername != "postgresql+asyncpg":
            raise ValueError(f"use the postgresql+asyncpg driver, not {parsed.drivername}")
        engine = _postgres_engine(
            url, pool_size, lock_timeout_seconds, statement_timeout_seconds, echo
        )
        _ping_when_idle(engine, idle_ping_seconds)
        return engine
    raise ValueError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")


def _sqlite_engine(url: str, pool_size: int, lock_timeout: float, echo: bool) -> AsyncEngine:
    # The file and options exactly as SQLAlchemy reads them from the URL, opened on our
    # aiosqlite connection that makes one thread hand-off per statement (sqlite_driver.py).
    args, options = sqlite_aiosqlite.dialect().create_connect_args(make_url(url))
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,  # see DEFAULT_POOL_SIZE
        async_creator=one_trip_connector(
            args,
            {**options, "timeout": lock_timeout},
            # On the connection's thread, where waiting for the switch blocks no event loop.
            prepare=lambda connection: switch_to_wal(connection, lock_timeout),
        ),
        echo=echo,
    )

    def on_connect(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
        # Let the "begin" hook below emit BEGIN (the sqlite3 module would emit a deferred one).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        # synchronous stays FULL (the default): a committed payment must survive a power cut.
        cursor.close()

    def on_begin(connection: Connection) -> None:
        # Sent with the transaction's first statement, in its hand-off (sqlite_driver.py).
        driver_of(connection).defer_begin("BEGIN IMMEDIATE")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
    _GATES[engine.sync_engine] = WriterGate(lock_timeout)
    return engine


def switch_to_wal(
    connection: sqlite3.Connection,
    lock_timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Set ``busy_timeout`` and WAL on a new sqlite3 connection, waiting for the switch.

    Switching a file to WAL needs its exclusive lock, and SQLite answers "database is locked"
    at once, without its busy handler, when another connection holds the write lock: two
    processes (or engines) opening a new file together failed one time in three. So the
    switch is retried here, in growing steps up to 50 ms, for at most ``lock_timeout``
    seconds; then the error is SQLite's. On a file already in WAL the pragma only reads.
    """
    connection.execute(f"PRAGMA busy_timeout = {round(lock_timeout * 1000)}")
    deadline = clock() + lock_timeout
    pause = 0.001
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or clock() + pause > deadline:
                raise
        sleep(pause)
        pause = min(pause * 2, 0.05)


class WriterGate:
    """SQLite's write lock, taken in-process first: this process's writers queue on an asyncio
    lock (a waiter sleeps until the holder commits and is woken at once, in arrival order)
    instead of each polling SQLite's busy handler, which sleeps in growing steps and let the
    p99 of a create reach 1.6 s at 16 connections. Other processes on the same file still meet
    at ``BEGIN IMMEDIATE`` and ``busy_timeout``."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def acquire(self) -> None:
        """Wait for this process's turn to write; fails like SQLite does after the timeout."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            # One lock per event loop (tests run several loops over a process's life).
            self._locks = {known: lk for known, lk in self._locks.items() if not known.is_closed()}
            lock = self._locks[loop] = asyncio.Lock()
        try:
            async with asyncio.timeout(self._timeout):
                await lock.acquire()
        except TimeoutError:
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            ) from None

    def release(self) -> None:
        self._locks[asyncio.get_running_loop()].release()


_GATES: weakref.WeakKeyDictionary[Engine, WriterGate] = weakref.WeakKeyDictionary()


def writer_gate(engine: AsyncEngine) -> WriterGate | None:
    """The engine's in-process writer gate (SQLite), or None (PostgreSQL locks rows)."""
    return _GATES.get(engine.sync_engine)


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``engine.begin()`` behind the writer gate on SQLite: a short committed transaction."""
    gate = writer_gate(engine)
    if gate is not None:
        await gate.acquire()
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        if gate is not None:
            gate.release()


_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def single_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for work that is one statement, which needs no transaction around it.

    On PostgreSQL the connection is in autocommit mode: the statement is its own transaction
    (atomic, its row locks held until it ends), without the ``BEGIN`` and ``COMMIT`` round
    trips a transaction adds. On SQLite it is :func:`write_transaction` (``BEGIN IMMEDIATE``
    behind the writer gate, like every write there). Run exactly one statement in it.
    """
    if engine.dialect.name != "postgresql":
        async with write_transaction(engine) as connection:
            yield connection
        return
    autocommit = _AUTOCOMMIT.get(engine)
    if autocommit is None:  # the same pool; the isolation level is reset on check-in
        autocommit = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as connection:
        yield connection


def _postgres_engine(
    url: str, pool_size: int, lock_timeout: float, statement_timeout: float | None, echo: bool
) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,  # see DEFAULT_POOL_SIZE
        pool_recycle=1800,
        connect_args={
            "timeout": 10,
            # asyncpg's default for every query of the connection (client side: it must fire
            # when the server cannot be heard at all)
            "command_timeout": statement_timeout,
            # Each statement is prepared once per connection and kept (an LRU of this size):
            # the statements of the request path are far fewer, so none is prepared twice.
            "prepared_statement_cache_size": PREPARED_STATEMENT_CACHE_SIZE,
            "server_settings": {
                "application_name": "paytabs-guard",
                "lock_timeout": str(round(lock_timeout * 1000)),
            },
        },
        echo=echo,
    )


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a connection at checkout only if it sat unused for ``idle_seconds``; a failed
    ping raises ``DisconnectionError``, on which the pool retries with a fresh connection."""
    dialect = engine.sync_engine.dialect

    def on_checkin(_dbapi: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[RETURNED_AT] = time.monotonic()

    def on_checkout(dbapi: DBAPIConnection, record: ConnectionPoolEntry, _proxy: object) -> None:
        returned_at = record.info.get(RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi)
        except Exception as error:
            raise DisconnectionError(f"an idle connection is gone: {error}") from error

    event.listen(engine.sync_engine.pool, "checkin", on_checkin)
    event.listen(engine.sync_engine.pool, "checkout", on_checkout)


def upsert(dialect: Dialect, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ``ON CONFLICT DO NOTHING / DO UPDATE``, in ``dialect``'s syntax."""
    return upsert_for(dialect.name, table)


def upsert_for(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """:func:`upsert` by dialect name (for statements built once per dialect)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported database {dialect_name!r}")
