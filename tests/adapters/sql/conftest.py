"""Every storage test runs on SQLite (a file in tmp_path) and on PostgreSQL (a fresh database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql import create_engine, sql_unit_of_work_factory, upgrade
from paytabs_guard.service.ports import UnitOfWorkFactory

from .builders import fixed_clock


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'paytabs-guard.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated to head."""
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWorkFactory:
    """Opens units of work on ``engine``; outbox rows are stamped by the builders' clock."""
    return sql_unit_of_work_factory(engine, clock=fixed_clock)


@pytest.fixture
async def postgres_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated PostgreSQL database, for what only PostgreSQL does (row locks
    that let two transactions work side by side)."""
    await upgrade(postgres_url)
    engine = create_engine(postgres_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def postgres_uow(postgres_engine: AsyncEngine) -> UnitOfWorkFactory:
    """Units of work on ``postgres_engine``."""
    return sql_unit_of_work_factory(postgres_engine, clock=fixed_clock)
