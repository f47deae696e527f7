"""An index for the page-deadline sleeper: the earliest deadline of the pages still waiting.

Revision ID: 0006_page_deadlines
Revises: 0005_saved_cards
Create Date: 2026-12-03

Each instance expires unpaid hosted pages at their deadline; it asks for the next few
``awaiting_customer`` deadlines after the last one it handled, ordered by deadline. Without this
index that is a scan of every waiting payment at every wake.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_page_deadlines"
down_revision: str | None = "0005_saved_cards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_payments_state_expires_at", "payments", ["state", "expires_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_payments_state_expires_at", table_name="payments")
