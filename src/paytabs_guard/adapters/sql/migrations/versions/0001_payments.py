"""Payments, their history, gateway transactions, conflicts and cart ids; idempotency keys,
webhook inbox and outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written by hand; ``tests/adapters/sql/test_migrations.py`` checks it builds exactly
``tables.metadata``.
Money is integer minor units; times are ``timestamptz`` (SQLite: UTC text).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite autoincrements only an INTEGER PRIMARY KEY (its rowid).
AUTOINCREMENT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)
MERCHANT_METADATA = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Check constraints are named with op.f(): final names, not wrapped by the naming convention.
    op.create_table(
        "payments",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("cart_id", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("tran_type", sa.String(32), nullable=False),
        sa.Column("description", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("tran_ref", sa.Text(), nullable=True),
        sa.Column("expires_at", INSTANT, nullable=True),
        sa.Column("redirect_url", sa.Text(), nullable=True),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("metadata", MERCHANT_METADATA, nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("conflict_count", sa.Integer(), nullable=False),
        sa.Column("hold_kind", sa.String(32), nullable=True),
        sa.Column("hold_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("hold_parent_tran_ref", sa.Text(), nullable=True),
        sa.Column("hold_sequence", sa.Integer(), nullable=True),
        sa.Column("hold_started_at", INSTANT, nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.UniqueConstraint("cart_id", name="uq_payments_cart_id"),
        sa.UniqueConstraint("tran_ref", name="uq_payments_tran_ref"),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "captured_minor >= 0 AND refunded_minor >= 0",
            name=op.f("ck_payments_money_not_negative"),
        ),
        sa.CheckConstraint(
            "conflict_count >= 0", name=op.f("ck_payments_conflict_count_not_negative")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_payments_version_positive")),
        sa.CheckConstraint(
            "(hold_kind IS NULL AND hold_amount_minor IS NULL AND hold_parent_tran_ref IS NULL"
            " AND hold_sequence IS NULL AND hold_started_at IS NULL)"
            " OR (hold_kind IS NOT NULL AND hold_amount_minor IS NOT NULL"
            " AND hold_parent_tran_ref IS NOT NULL AND hold_sequence IS NOT NULL"
            " AND hold_started_at IS NOT NULL)",
            name=op.f("ck_payments_hold_all_or_none"),
        ),
    )
    # Reconciliation scans (state, updated_at); listings page newest first on (created_at, id).
    op.create_index("ix_payments_state_updated_at", "payments", ["state", "updated_at"])
    op.create_index("ix_payments_created_at_id", "payments", ["created_at", "id"])

    op.create_table(
        "payment_cart_ids",
        sa.Column("cart_id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("cart_id", name="pk_payment_cart_ids"),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name="fk_payment_cart_ids_payment_id_payments"
        ),
        sa.UniqueConstraint("payment_id", "attempt", name="uq_payment_cart_ids_payment_id_attempt"),
    )

    op.create_table(
        "payment_transitions",
        sa.Column("id", AUTOINCREMENT_KEY, autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("gateway_ref", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payment_transitions"),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name="fk_payment_transitions_payment_id_payments"
        ),
        sa.UniqueConstraint("payment_id", "seq", name="uq_payment_transitions_payment_id_seq"),
    )

    op.create_table(
        "gateway_transactions",
        sa.Column("tran_ref", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("previous_tran_ref", sa.Text(), nullable=True),
        sa.Column("tran_type", sa.String(32), nullable=False),
        sa.Column("status", sa.CHAR(1), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("tran_ref", name="pk_gateway_transactions"),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name="fk_gateway_transactions_payment_id_payments"
        ),
        sa.UniqueConstraint("payment_id", "seq", name="uq_gateway_transactions_payment_id_seq"),
    )

    op.create_table(
        "payment_conflicts",
        sa.Column("id", AUTOINCREMENT_KEY, autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("tran_ref", sa.Text(), nullable=False),
        sa.Column("tran_type", sa.String(32), nullable=False),
        sa.Column("reported_status", sa.CHAR(1), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payment_conflicts"),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name="fk_payment_conflicts_payment_id_payments"
        ),
    )
    op.create_index("ix_payment_conflicts_payment_id", "payment_conflicts", ["payment_id"])

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("resource_id", sa.Text(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("completed_at", INSTANT, nullable=True),
        sa.Column("expires_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
        sa.CheckConstraint(
            "status IN ('in_flight', 'completed')", name=op.f("ck_idempotency_keys_status")
        ),
        sa.CheckConstraint(
            "status = 'in_flight' OR (response_status IS NOT NULL AND response_body IS NOT NULL)",
            name=op.f("ck_idempotency_keys_completed_has_response"),
        ),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "webhook_inbox",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("received_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_webhook_inbox"),
    )
    op.create_index("ix_webhook_inbox_received_at", "webhook_inbox", ["received_at"])

    op.create_table(
        "outbox",
        sa.Column("seq", AUTOINCREMENT_KEY, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("published_at", INSTANT, nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_until", INSTANT, nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        # Never reuse a seq, even after the highest one is purged (SQLite's rowid would).
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_payment_id", "outbox", ["payment_id"])
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["seq"],
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    for table in (
        "outbox",
        "webhook_inbox",
        "idempotency_keys",
        "payment_conflicts",
        "gateway_transactions",
        "payment_transitions",
        "payment_cart_ids",
        "payments",
    ):
        op.drop_table(table)
