"""Whether the database takes writes, for readiness (docs/operations.md, "Readiness").

A database that answers reads but refuses writes (PostgreSQL left on a read-only server after a
failover, a SQLite file that can no longer be written) passed the readiness ping, ``SELECT 1``,
while every create answered 503. Probing a write on every readiness call would cost a write
(on SQLite a commit to the WAL) every few seconds on every instance for a failure that is rare,
so the units of work report how their commits end (:class:`WriteHealth`, nothing added to the
request path), and readiness probes a write (:func:`probe_writes`) while the latest commit
failed with a storage error, and on PostgreSQL always (there the probe is one read, so an
instance started on a read-only server is never ready). A read-only refusal replaces the
pool's connections (:func:`reconnect_read_only`). The probe also decides: one failed commit (a
pool timeout, a connection cut once) that a probe then writes through is a blip, not
unreadiness; and an
instance taken out of the load balancer gets no requests whose commits could report recovery,
so the probe is what brings it back.
"""

from __future__ import annotations

from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.observability import get_logger

from .engine import write_transaction

log = get_logger(__name__)

#: What a commit fails with when the database cannot take it now (the API's 503
#: storage-unavailable): not a conflict, a refused reference or a bug, which say nothing about
#: the database. ``DatabaseReadOnly`` is an ``OperationalError``.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)

#: SQLSTATE ``read_only_sql_transaction``: "cannot execute INSERT in a read-only transaction".
_READ_ONLY_SQLSTATE = "25006"


class DatabaseReadOnly(exc.OperationalError):
    """PostgreSQL refused a write because the server or the session is read-only (a standby
    after a failover). asyncpg's error reaches SQLAlchemy as a plain ``DBAPIError``, which was a
    500; like an unreachable database it is one to retry later (503 storage-unavailable)."""


def read_only(error: BaseException) -> DatabaseReadOnly | None:
    """``error`` as :class:`DatabaseReadOnly` when it is PostgreSQL refusing a write because it
    is read-only; None otherwise."""
    if not isinstance(error, exc.DBAPIError) or isinstance(error, exc.OperationalError):
        return None
    orig = error.orig
    if orig is None or getattr(orig, "sqlstate", None) != _READ_ONLY_SQLSTATE:
        return None
    return DatabaseReadOnly(error.statement, error.params, orig)


class WriteHealth:
    """How the latest commit ended: ``failure`` is why it failed with a storage error, None once
    one succeeds (or a write probe does). The first failure after a success is logged as a
    warning; the ones after it are not (every request would log it again)."""

    def __init__(self) -> None:
        self.failure: str | None = None

    def succeeded(self) -> None:
        if self.failure is not None:
            self.failure = None
            log.warning("database writes succeed again")

    def failed(self, error: BaseException) -> bool:
        """Record ``error``; True when it starts a failure (the latest write had succeeded)."""
        if self.failure is not None:
            return False
        # The error's text, not only its class: "read-only transaction", "disk I/O error".
        reason = f"{type(error).__name__}: {_first_line(error)}"
        log.warning("database writes failing", reason=reason)
        self.failure = reason[:200]
        return True


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    return str(orig if orig is not None else error).strip().split("\n", 1)[0]


async def probe_writes(engine: AsyncEngine) -> None:
    """Raise unless the database takes a write now.

    PostgreSQL: ``SHOW transaction_read_only``, one read (``on`` on a standby and on a database
    or session set read-only). SQLite: a committed write that changes nothing (``user_version``
    set to its own value rewrites the header page), behind the writer gate like every write:
    a file that cannot be written fails it as it fails a commit."""
    if engine.dialect.name == "postgresql":
        # A pooled session may be stale (opened while the database was read-only): asked
        # again on a fresh connection before the answer counts.
        for _ in range(2):
            async with engine.connect() as connection:
                setting = (await connection.execute(text("SHOW transaction_read_only"))).scalar()
            if setting != "on":
                return
            await reconnect_read_only(engine)
        raise DatabaseReadOnly("SHOW transaction_read_only", None, Exception("read-only"))
    async with write_transaction(engine) as connection:
        version = int((await connection.execute(text("PRAGMA user_version"))).scalar() or 0)
        await connection.execute(text(f"PRAGMA user_version = {version}"))


async def reconnect_read_only(engine: AsyncEngine) -> None:
    """Close the pool's connections (those in use close when given back): a session on a
    server that became read-only (a failover's old primary, a standby) or one opened while
    the database was set read-only keeps refusing writes after the database takes them again.
    Fresh connections find the server as it is now. A verification audit saw writes refused
    until restart after the database was writable again (``pool_recycle`` is 30 minutes)."""
    await engine.dispose()
