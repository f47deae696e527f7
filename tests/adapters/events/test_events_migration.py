"""Migration 0002 builds exactly ``event_deliveries`` of events/tables.py, and takes it away."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.sql.migrate import (
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from paytabs_guard.adapters.sql.tables import outbox

pytestmark = pytest.mark.anyio


def _differences(connection: Connection) -> list[object]:
    expected = MetaData()
    outbox.to_metadata(expected)  # the foreign key's target
    event_deliveries.to_metadata(expected)

    def include_name(name: str | None, type_: str, _: object) -> bool:
        return type_ != "table" or name == event_deliveries.name

    def include_object(item: object, name: str | None, type_: str, *_: object) -> bool:
        return type_ != "table" or name == event_deliveries.name

    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": include_name,
            "include_object": include_object,
        },
    )
    return list(compare_metadata(context, expected))


async def _table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_0002_builds_the_event_deliveries_table_of_tables_py(
    engine: AsyncEngine, database_url: str
) -> None:
    # Later revisions (0003: charged amounts) leave event_deliveries as 0002 built it.
    assert await current_revision(database_url) == head_revision()
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_0002_downgrades_to_0001_and_back(engine: AsyncEngine, database_url: str) -> None:
    await downgrade(database_url, "0001")
    assert "event_deliveries" not in await _table_names(engine)
    assert "outbox" in await _table_names(engine)
    await upgrade(database_url)
    assert "event_deliveries" in await _table_names(engine)
