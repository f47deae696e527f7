"""Engines: SQLite set up for concurrent writers; only aware times are stored."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql import create_engine
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
