"""Saved cards PayTabs refused as unknown: when, with the token kept.

Revision ID: 0012_saved_card_refusals
Revises: 0011_merchant_idempotency_scope
Create Date: 2026-12-06

A charge PayTabs refuses because it does not know the card's token (code 209) retires the
card. The token is kept, not forgotten: the refusal is PayTabs' word about one profile, and a
service pointed at the wrong profile by mistake would otherwise lose every customer's card on
its first round of renewals. Clearing ``refused_at`` gives a card back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_saved_card_refusals"
down_revision: str | None = "0011_merchant_idempotency_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("saved_cards", sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("saved_cards") as batch:
        batch.drop_column("refused_at")
