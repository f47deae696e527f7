"""Event delivery: one row per (outbox event, sink), with retry state and dead letters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01

``event_deliveries`` is the outbox relay's work queue (``adapters/events/tables.py``). A dead
letter is a row with ``status = 'dead'``; an operator lists and replays them
(``adapters/events/dead_letters.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # op.f(): the names are final; metadata's naming convention must not wrap them again.
    op.create_table(
        "event_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("sink", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_deliveries")),
        sa.ForeignKeyConstraint(
            ["seq"], ["outbox.seq"], name=op.f("fk_event_deliveries_seq_outbox")
        ),
        sa.UniqueConstraint("event_id", "sink", name=op.f("uq_event_deliveries_event_id_sink")),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name=op.f("ck_event_deliveries_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_event_deliveries_attempts_not_negative")),
    )
    op.create_index(
        op.f("ix_event_deliveries_due"), "event_deliveries", ["sink", "status", "next_attempt_at"]
    )
    op.create_index(
        op.f("ix_event_deliveries_order"), "event_deliveries", ["sink", "payment_id", "seq"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_event_deliveries_order"), table_name="event_deliveries")
    op.drop_index(op.f("ix_event_deliveries_due"), table_name="event_deliveries")
    op.drop_table("event_deliveries")
