"""Partial indexes for reconciliation's follow-up questions: held payments, pending follow-ups.

Revision ID: 0009_follow_ups_in_flight
Revises: 0008_feed_order
Create Date: 2026-12-04

A refund, capture or void whose answer was lost keeps its hold on the payment; one PayTabs
reported pending is recorded with status P. Follow-ups are sent without a callback URL, so
only reconciliation settles either, and each pass asks which payments have one. These indexes
hold only such rows, so the question costs as little as there are follow-ups in flight,
however many payments and transactions pile up.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_follow_ups_in_flight"
down_revision: str | None = "0008_feed_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same text as tables.HELD and tables.PENDING_FOLLOW_UP (the migration test compares them).
_HELD = sa.text("hold_started_at IS NOT NULL")
_PENDING_FOLLOW_UP = sa.text(
    "tran_type IN ('capture', 'void', 'release', 'refund')"
    " AND (status IS NULL OR status IN ('P', 'H'))"
)


def upgrade() -> None:
    op.create_index(
        "ix_payments_hold_started_at",
        "payments",
        ["hold_started_at"],
        sqlite_where=_HELD,
        postgresql_where=_HELD,
    )
    op.create_index(
        "ix_gateway_transactions_pending_follow_up",
        "gateway_transactions",
        ["payment_id"],
        sqlite_where=_PENDING_FOLLOW_UP,
        postgresql_where=_PENDING_FOLLOW_UP,
    )


def downgrade() -> None:
    op.drop_index("ix_gateway_transactions_pending_follow_up", table_name="gateway_transactions")
    op.drop_index("ix_payments_hold_started_at", table_name="payments")
