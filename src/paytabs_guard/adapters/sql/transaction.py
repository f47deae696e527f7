"""One database transaction shared by a unit of work's repository and inbox."""

from __future__ import annotations

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Transaction:
    """Begins on first use, so a unit of work that never touches the database costs nothing
    (and on SQLite does not take the write lock)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None

    async def connection(self) -> AsyncConnection:
        """The transaction's connection, beginning the transaction if needed."""
        if self._connection is None:
            connection = await self._engine.connect()
            try:
                await connection.begin()
            except BaseException:
                await _close(connection)
                raise
            self._connection = connection
        return self._connection

    async def commit(self) -> None:
        """Commit and give the connection back; the next use begins a new transaction."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.commit()
            finally:
                await _close(connection)

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
                    await connection.close()


async def _close(connection: AsyncConnection) -> None:
    with anyio.CancelScope(shield=True):
        await connection.close()  # rolls back anything left open
