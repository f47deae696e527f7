"""Alembic environment: runs on the connection ``paytabs_guard.adapters.sql.migrate`` hands over.

That module opens the transaction (``BEGIN IMMEDIATE`` on SQLite, plus an advisory lock on
PostgreSQL) so concurrent upgraders queue, and every migration runs inside it: all or nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from paytabs_guard.adapters.sql.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run migrations with `paytabs-guard db upgrade` "
        "(paytabs_guard.adapters.sql.migrate.upgrade), not the alembic command"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    # SQLite cannot ALTER most things: later migrations change tables by copy-and-swap.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
