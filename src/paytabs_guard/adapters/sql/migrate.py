"""Schema migrations, run from code: ``paytabs-guard db upgrade`` calls :func:`upgrade`.

The Alembic scripts ship inside the package (``migrations/``), so no ``alembic.ini`` is needed
and an installed wheel can migrate its database. :func:`upgrade` is safe on every start and from
several processes at once: all migrations run in one transaction, which on PostgreSQL first
takes an advisory lock and on SQLite begins IMMEDIATE, so a second upgrader waits, then finds
the schema current and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from .engine import create_engine

MIGRATIONS: Final = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY: Final = 0x70_74_67_2D_6D_69_67  # "ptg-mig": one lock id for every instance


def alembic_config() -> Config:
    """Alembic's configuration, built in code and pointing at the packaged scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest revision the packaged scripts know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(
    url: str, revision: str = "head", *, webhook_aliases: Mapping[str, str] | None = None
) -> None:
    """Bring the database at ``url`` to ``revision`` (default: the newest).

    ``webhook_aliases``: the service's webhook sinks as named by position (``webhook:1``) to
    their names now, from EVENTS_WEBHOOK_URLS; migration 0013 moves the stored deliveries by
    it (and only that migration reads it)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        config.attributes["webhook_aliases"] = dict(webhook_aliases or {})
        command.upgrade(config, revision)

    await _migrate(url, run)


async def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``"base"``: empty). Loses data."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    await _migrate(url, run)


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None before the first migration."""
    revisions: list[str | None] = []

    def read(connection: Connection) -> None:
        revisions.append(MigrationContext.configure(connection).get_current_revision())

    await _migrate(url, read)
    return revisions[0]


async def _migrate(url: str, work: Callable[[Connection], None]) -> None:
    engine = create_engine(url, pool_size=1, statement_timeout_seconds=None)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; a concurrent upgrader queues here.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            else:
                # SQLite's BEGIN IMMEDIATE goes with the first statement: send one now, so a
                # concurrent upgrader queues here too, before Alembic starts. (Alembic keeps
                # its context in globals: two upgrades of one process must not interleave.)
                await connection.exec_driver_sql("SELECT 1")
            await connection.run_sync(work)
    finally:
        await engine.dispose()
