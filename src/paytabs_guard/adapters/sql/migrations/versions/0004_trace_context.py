"""The W3C trace context of the request that wrote an outbox row (``traceparent``,
``tracestate``).

Revision ID: 0004_trace_context
Revises: 0003
Create Date: 2026-12-03

With tracing on (docs/observability.md), an event written inside a traced request keeps that
request's trace context, so its deliveries join the same trace and outgoing webhooks carry it
as the ``traceparent`` header. NULL when tracing was off, for events written outside a request,
and for rows written before this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_trace_context"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite alters tables by copying them; PostgreSQL gets plain ALTER TABLE.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("traceparent", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tracestate", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("tracestate")
        batch.drop_column("traceparent")
