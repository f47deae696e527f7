"""Partial indexes for the relay's queue: pending deliveries by sink, by payment, and dead ones.

Revision ID: 0007_pending_deliveries
Revises: 0006_page_deadlines
Create Date: 2026-12-04

The relay's claim walks a sink's pending deliveries oldest first and, for each candidate, asks
whether an earlier delivery of the same payment is still pending. The indexes it had covered
every row (``(sink, status, next_attempt_at)`` and ``(sink, payment_id, seq)``), and under load
PostgreSQL, with statistics taken while the table was small, answered each of those questions
from the first one: a scan of every pending delivery per candidate. With a backlog of 3,500 a
claim took 1.4 s of PostgreSQL CPU, and the relay fell further behind the more it had to do.

These indexes hold the pending (or dead) rows only, so they are as small as the queue, and
each question has exactly one index that answers it. The two old indexes go: nothing else
reads them, and every index on ``status`` is one more entry to write per delivery.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_pending_deliveries"
down_revision: str | None = "0006_page_deadlines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")
# The claim's walk in seq order; the second condition keeps the per-payment probes off it.
_WALKED = sa.text("status = 'pending' AND next_attempt_at IS NOT NULL")
_DEAD = sa.text("status = 'dead'")
_UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    for name, columns, where in (
        ("ix_event_deliveries_pending", ["sink", "seq"], _WALKED),
        ("ix_event_deliveries_pending_payment", ["sink", "payment_id", "seq"], _PENDING),
        ("ix_event_deliveries_dead", ["sink", "seq"], _DEAD),
    ):
        op.create_index(
            name, "event_deliveries", columns, sqlite_where=where, postgresql_where=where
        )
    op.create_index(
        "ix_outbox_unpublished_payment",
        "outbox",
        ["payment_id", "seq"],
        sqlite_where=_UNPUBLISHED,
        postgresql_where=_UNPUBLISHED,
    )
    op.drop_index("ix_event_deliveries_due", table_name="event_deliveries")
    op.drop_index("ix_event_deliveries_order", table_name="event_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_event_deliveries_due", "event_deliveries", ["sink", "status", "next_attempt_at"]
    )
    op.create_index("ix_event_deliveries_order", "event_deliveries", ["sink", "payment_id", "seq"])
    op.drop_index("ix_outbox_unpublished_payment", table_name="outbox")
    for name in (
        "ix_event_deliveries_dead",
        "ix_event_deliveries_pending_payment",
        "ix_event_deliveries_pending",
    ):
        op.drop_index(name, table_name="event_deliveries")
