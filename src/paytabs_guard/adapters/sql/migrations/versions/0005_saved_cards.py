"""Saved cards: PayTabs tokens a customer let the merchant keep, and the card a payment saves or
charges.

Revision ID: 0005_saved_cards
Revises: 0004_trace_context
Create Date: 2026-12-03

``saved_cards`` holds one row per payment that asked to save its card; the token arrives with
the payment's authorised result and is cleared again when the card is deleted.
``payments.saved_card_id`` is NULL for every payment written before this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_saved_cards"
down_revision: str | None = "0004_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saved_cards",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("tran_ref", sa.Text(), nullable=True),
        sa.Column("card_scheme", sa.String(32), nullable=True),
        sa.Column("last_four", sa.CHAR(4), nullable=True),
        sa.Column("expiry_month", sa.Integer(), nullable=True),
        sa.Column("expiry_year", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_cards")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_saved_cards_payment_id")),
    )
    op.create_index(
        op.f("ix_saved_cards_customer_id_created_at"),
        "saved_cards",
        ["customer_id", "created_at"],
    )
    # batch: SQLite alters tables by copying them; PostgreSQL gets plain ALTER TABLE.
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("saved_card_id", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("saved_card_id")
    op.drop_index(op.f("ix_saved_cards_customer_id_created_at"), table_name="saved_cards")
    op.drop_table("saved_cards")
