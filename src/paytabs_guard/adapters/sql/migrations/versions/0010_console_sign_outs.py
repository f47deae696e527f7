"""Console sign-outs: sessions ended before their cookie expires.

Revision ID: 0010_console_sign_outs
Revises: 0009_follow_ups_in_flight
Create Date: 2026-12-05

The console's session cookie carries no state (a client id, an expiry and an HMAC), so signing
out only cleared it in the browser: a copy of it opened the console until it expired. Each
sign-out is now a row, read by every instance, pruned once its cookie would have expired.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_console_sign_outs"
down_revision: str | None = "0009_follow_ups_in_flight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sign_outs",
        sa.Column("session", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sign_outs_expires_at", "console_sign_outs", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sign_outs_expires_at", table_name="console_sign_outs")
    op.drop_table("console_sign_outs")
