"""What PayTabs charged and answered: ``tran_total``/``tran_currency`` and the response code and
message of each gateway transaction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

An authorised result is only applied when the charge equals the payment's amount (or, with
PAYTABS_CURRENCY_CONVERSION, is in another currency); the charge is kept so the API can show it.
The response code and message say why an attempt failed (``last_payment_error`` in the API).
The columns are NULL for rows written before this revision and for results that did not say.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite alters tables by copying them; PostgreSQL gets plain ALTER TABLE.
    with op.batch_alter_table("gateway_transactions") as batch:
        batch.add_column(sa.Column("charged_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("charged_currency", sa.CHAR(3), nullable=True))
        batch.add_column(sa.Column("response_code", sa.Text(), nullable=True))
        batch.add_column(sa.Column("response_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_transactions") as batch:
        batch.drop_column("response_message")
        batch.drop_column("response_code")
        batch.drop_column("charged_currency")
        batch.drop_column("charged_minor")
