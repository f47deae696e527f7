"""Engines: SQLite set up for concurrent writers; only aware times are stored."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from paytabs_guard.adapters.sql import create_engine
from paytabs_guard.adapters.sql.statements import counting
from paytabs_guard.adapters.sql.tables import webhook_inbox

pytestmark = pytest.mark.anyio


async def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", lock_timeout_seconds=7)
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: await connection.scalar(text(f"PRAGMA {name}"))
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 7000}


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite://",
        "sqlite:///file.db",
        "postgresql://localhost/db",
        "mysql+aiomysql://localhost/db",
    ],
)
def test_unsupported_urls_are_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ValueError, match=r"SQLite|driver|unsupported"):
        create_engine(url)


async def test_a_naive_datetime_is_refused_not_guessed(engine: AsyncEngine) -> None:
    naive = datetime(2025, 1, 29, 9, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(StatementError, match="no time zone"):
        async with engine.begin() as connection:
            await connection.execute(
                webhook_inbox.insert().values(key="k", source="callback", received_at=naive)
            )


@pytest.mark.postgres
async def test_a_connection_cut_while_idle_is_replaced_not_failed(postgres_url: str) -> None:
    # idle_ping_seconds=0: every checkout counts as "idle long enough", as after a quiet night.
    engine = create_engine(postgres_url, pool_size=1, idle_ping_seconds=0)
    admin = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            first_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with admin.connect() as killer:  # the pooled connection dies while idle
            await killer.execute(text(f"SELECT pg_terminate_backend({first_pid})"))
        async with engine.connect() as connection:
            second_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
    finally:
        await engine.dispose()
        await admin.dispose()
    assert second_pid != first_pid


@pytest.mark.postgres
async def test_postgres_checks_out_without_a_ping_while_busy(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with counting(engine) as count:
            for _ in range(3):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert count.statements == 3
    assert "pre-ping" not in count.texts


async def test_a_busy_pool_keeps_its_connections_instead_of_opening_and_closing_more(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=3)
    opened = 0

    def on_connect(*_: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(engine.sync_engine, "connect", on_connect)
    busy = asyncio.Event()
    inside = 0

    async def hold() -> None:
        nonlocal inside
        async with engine.connect():  # a connection checked out (on SQLite: no write lock)
            inside += 1
            if inside == 3:
                busy.set()
            await busy.wait()

    try:
        for _ in range(4):  # four rounds of ten requests, three connections at a time
            inside = 0
            busy.clear()
            await asyncio.gather(*(hold() for _ in range(10)))
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert (opened, pool.checkedin()) == (3, 3)
    finally:
        await engine.dispose()
