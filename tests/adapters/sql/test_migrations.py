"""Migrations: empty to head on both databases, repeatable, concurrent, and equal to tables.py."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from paytabs_guard.adapters.sql import create_engine, upgrade
from paytabs_guard.adapters.sql.migrate import current_revision, downgrade, head_revision
from paytabs_guard.adapters.sql.tables import (
    console_sign_outs,
    gateway_transactions,
    idempotency_keys,
    outbox,
    payment_cart_ids,
    payment_conflicts,
    payment_transitions,
    payments,
    webhook_inbox,
)
from paytabs_guard.entrypoints.api.idempotency import MERCHANT_SCOPE

pytestmark = pytest.mark.anyio

OURS = (
    payments,
    payment_cart_ids,
    payment_transitions,
    gateway_transactions,
    payment_conflicts,
    idempotency_keys,
    webhook_inbox,
    outbox,
    console_sign_outs,  # 0010's, checked here too
)


def _differences(connection: Connection) -> list[object]:
    # Only 0001's tables: other adapters add theirs to the same metadata in later revisions.
    mine = MetaData()
    for table in OURS:
        table.to_metadata(mine)
    names = {table.name for table in OURS}

    def include_name(name: str | None, type_: str, _: object) -> bool:
        return type_ != "table" or name in names

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": include_name}
    )
    return list(compare_metadata(context, mine))


async def test_upgrade_builds_the_schema_of_tables_py(database_url: str) -> None:
    assert await current_revision(database_url) is None
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert {table.name for table in OURS} <= tables
    assert differences == []


async def test_upgrade_is_safe_to_repeat_and_downgrade_empties_the_database(
    database_url: str,
) -> None:
    await upgrade(database_url)
    await upgrade(database_url)
    await downgrade(database_url, "base")
    assert await current_revision(database_url) is None
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()


async def test_concurrent_upgrades_from_two_instances_both_succeed(database_url: str) -> None:
    async with anyio.create_task_group() as group:
        for _ in range(2):
            group.start_soon(upgrade, database_url)
    assert await current_revision(database_url) == head_revision()


async def test_keys_stored_per_api_key_become_the_merchants(database_url: str) -> None:
    """0011: a key claimed before the upgrade (scoped to its API key's id) is found under the
    merchant's scope after it, so a retry across the upgrade replays; of a key two API keys
    used (two rows, two payments), the first request's row becomes the merchant's."""
    await upgrade(database_url, "0010_console_sign_outs")
    engine = create_engine(database_url)
    row = {
        "fingerprint": "f",
        "status": "in_flight",
        "created_at": datetime(2026, 12, 5, 10, tzinfo=UTC),
        "expires_at": datetime(2026, 12, 6, 10, tzinfo=UTC),
    }
    insert = text(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, created_at, expires_at)"
        " VALUES (:scope, :key, :fingerprint, :status, :created_at, :expires_at)"
    )
    try:
        async with engine.begin() as connection:
            for scope, key, hour in (
                ("key_b", "twice-0001", 9),  # sent first with key_b, then again with key_a
                ("key_a", "alone-0001", 9),
                ("key_a", "twice-0001", 10),
            ):
                at = {"created_at": datetime(2026, 12, 5, hour, tzinfo=UTC)}
                await connection.execute(insert, row | at | {"scope": scope, "key": key})
        await upgrade(database_url)
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT scope, key FROM idempotency_keys"))
            found = sorted((r.scope, r.key) for r in rows)
    finally:
        await engine.dispose()
    # the first request's row is the merchant's: its retry replays the first payment
    assert found == [
        ("key_a", "twice-0001"),
        ("merchant", "alone-0001"),
        ("merchant", "twice-0001"),
    ]
    assert MERCHANT_SCOPE == "merchant"  # the migration wrote the scope the service reads
