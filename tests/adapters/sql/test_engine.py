"""Engines: SQLite set up for concurrent writers; only aware times are stored."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from paytabs_guard.adapters.sql import create_engine
from paytabs_guard.adapters.sql.engine import switch_to_wal
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


async def test_engines_opening_a_new_file_together_all_get_it_in_wal(tmp_path: Path) -> None:
    # Two workers (or a migration and a worker) starting on a new file: SQLite refuses the
    # WAL switch at once while another connection writes, and one time in three one of them
    # failed to connect. Twenty rounds: without the wait, one round failing is near certain.
    for round_ in range(20):
        url = f"sqlite+aiosqlite:///{tmp_path / f'new-{round_}.db'}"
        engines = [create_engine(url, pool_size=1) for _ in range(2)]

        async def first_write(engine: AsyncEngine) -> str:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                mode: str = await connection.scalar(text("PRAGMA journal_mode"))
            return mode

        try:
            modes = await asyncio.gather(*(first_write(engine) for engine in engines))
        finally:
            for engine in engines:
                await engine.dispose()
        assert modes == ["wal", "wal"]


def _rollback_mode_file_with_a_writer(path: Path) -> sqlite3.Connection:
    """A file still in rollback-journal mode and a connection holding its write lock."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    return writer


def test_the_wal_switch_waits_for_a_writer_instead_of_failing(tmp_path: Path) -> None:
    writer = _rollback_mode_file_with_a_writer(tmp_path / "busy.db")
    opened = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # what SQLite alone does
        opened.execute("PRAGMA journal_mode = WAL")
    waited: list[float] = []

    def writer_commits_meanwhile(seconds: float) -> None:
        waited.append(seconds)
        writer.execute("COMMIT")

    switch_to_wal(opened, 5.0, sleep=writer_commits_meanwhile)
    assert opened.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert opened.execute("SELECT x FROM t").fetchall() == [(1,)]  # the writer's row stands
    assert opened.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    assert sum(waited) < 5.0
    writer.close()
    opened.close()


def test_the_wal_switch_gives_up_with_sqlites_error_after_the_lock_timeout(
    tmp_path: Path,
) -> None:
    writer = _rollback_mode_file_with_a_writer(tmp_path / "held.db")
    opened = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    now = [0.0]

    def time_passes(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        switch_to_wal(opened, 2.0, sleep=time_passes, clock=lambda: now[0])
    assert 1.9 <= now[0] <= 2.0  # waited out the timeout, not longer
    assert opened.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    writer.close()
    opened.close()


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
