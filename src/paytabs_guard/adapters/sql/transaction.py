"""One database transaction shared by a unit of work's repository and inbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .compiled import fetch_all_alone
from .engine import single_statement, writer_gate


class DbTransaction:
    """Begins on first use, so a unit of work that never touches the database costs nothing
    (and on SQLite does not take the write lock)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._gate = writer_gate(engine)
        self._connection: AsyncConnection | None = None

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    @property
    def _alone(self) -> bool:
        """A read now would be a statement on its own: PostgreSQL, nothing begun yet."""
        return self._connection is None and self._engine.dialect.name == "postgresql"

    @property
    def begun(self) -> bool:
        """Whether something ran in this transaction already (and holds its locks)."""
        return self._connection is not None

    async def connection(self) -> AsyncConnection:
        """The transaction's connection, beginning the transaction if needed (on SQLite after
        this process's writer gate let it through)."""
        if self._connection is None:
            if self._gate is not None:
                await self._gate.acquire()
            try:
                connection = await self._engine.connect()
                try:
                    await connection.begin()
                except BaseException:
                    await _close(connection)
                    raise
            except BaseException:
                self._open_gate()
                raise
            self._connection = connection
        return self._connection

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read that locks nothing.

        On PostgreSQL, until the transaction has begun, the read is a statement on its own
        (autocommit), and the transaction still has not begun after it. At READ COMMITTED a
        plain read inside a transaction holds nothing a read on its own does not (each
        statement takes its own snapshot, and a plain read takes no lock), so this only spares
        the ``BEGIN``, and the ``ROLLBACK`` of a unit of work that writes nothing after it. A
        payment read this way is written behind its version check, like any payment read
        without its lock. Once the transaction has begun, the read runs in it, so it sees what
        the transaction wrote. On SQLite every read runs in the transaction, whose first
        statement takes the write lock."""
        if self._alone:
            async with single_statement(self._engine) as connection:
                yield connection
        else:
            yield await self.connection()

    async def read(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Mapping[Any, Any]]:
        """The rows of one read that locks nothing, as :meth:`reading` runs it. On PostgreSQL
        before the transaction has begun it goes past SQLAlchemy's execute, on a pooled asyncpg
        connection (``compiled.fetch_all_alone``; a third of the CPU). ``statement`` must be
        one built once and reused: it is compiled once and kept."""
        if self._alone:
            return await fetch_all_alone(self._engine, statement, params)
        async with self.reading() as connection:
            return (await connection.execute(statement, params)).mappings().all()

    async def commit(self) -> None:
        """Commit and give the connection back; the next use begins a new transaction."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.commit()
            finally:
                try:
                    await _close(connection)
                finally:
                    self._open_gate()

    async def rollback(self) -> None:
        """Roll back whatever is open and give the connection back."""
        connection, self._connection = self._connection, None
        if connection is not None:
            # Shielded: a cancelled request must still end its transaction and give back its
            # locks (on SQLite, the database's write lock) now, not when the GC finds them.
            with anyio.CancelScope(shield=True):
                try:
                    await connection.rollback()
                finally:
                    try:
                        await connection.close()
                    finally:
                        self._open_gate()

    def _open_gate(self) -> None:
        if self._gate is not None:
            self._gate.release()


async def _close(connection: AsyncConnection) -> None:
    with anyio.CancelScope(shield=True):
        await connection.close()  # rolls back anything left open
