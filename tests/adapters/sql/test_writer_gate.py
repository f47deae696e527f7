"""SQLite: this process's writers queue on an in-process gate, never on SQLite's busy handler."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from paytabs_guard.adapters.sql import create_engine, sql_unit_of_work_factory, upgrade
from paytabs_guard.adapters.sql.engine import write_transaction
from paytabs_guard.adapters.sql.tables import webhook_inbox

from .builders import T0, count, fixed_clock, new_payment

pytestmark = pytest.mark.anyio


async def test_concurrent_units_of_work_take_turns_without_the_busy_handler(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}"
    await upgrade(url)
    engine = create_engine(url, pool_size=8)

    def no_busy_wait(dbapi: DBAPIConnection, _: ConnectionPoolEntry) -> None:
        # A writer that met another one at BEGIN IMMEDIATE would now fail at once with
        # "database is locked": only the gate can keep these writers apart.
        cursor = dbapi.cursor()
        cursor.execute("PRAGMA busy_timeout = 0")
        cursor.close()

    event.listen(engine.sync_engine, "connect", no_busy_wait)
    uow = sql_unit_of_work_factory(engine, clock=fixed_clock)

    async def save(n: int) -> None:
        async with uow() as work:
            work.payments.add(new_payment(f"pay_{n}"))
            await asyncio.sleep(0)  # let the others pile up behind this writer
            await work.inbox.record(f"delivery-{n}", source="callback", now=T0)
            await work.commit()

    async def record(n: int) -> None:
        async with write_transaction(engine) as connection:
            await connection.execute(
                webhook_inbox.insert(),
                {"key": f"other-{n}", "source": "callback", "received_at": T0},
            )

    try:
        await asyncio.gather(*(save(n) for n in range(12)), *(record(n) for n in range(6)))
        assert await count(engine, "payments") == 12
        assert await count(engine, "webhook_inbox") == 18
    finally:
        await engine.dispose()


async def test_a_writer_that_never_gets_its_turn_fails_like_sqlite_does(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}"
    await upgrade(url)
    engine = create_engine(url, lock_timeout_seconds=0.05)
    uow = sql_unit_of_work_factory(engine, clock=fixed_clock)
    try:
        async with uow() as holder:
            await holder.inbox.record("first", source="callback", now=T0)
            with pytest.raises(OperationalError, match="database is locked"):
                async with uow() as waiter:
                    await waiter.inbox.record("second", source="callback", now=T0)
        async with uow() as after:  # the gate was given back by both
            assert await after.inbox.record("third", source="callback", now=T0)
            await after.commit()
    finally:
        await engine.dispose()
