"""Idempotency-Keys scoped to the merchant instead of the API key that sent them.

Revision ID: 0011_merchant_idempotency_scope
Revises: 0010_console_sign_outs
Create Date: 2026-12-05

A key's scope was the id of the API key that sent it, so a retry sent with the new key of a
rotation (both in API_KEYS, both the same merchant) found nothing and charged or refunded a
second time. Keys are now scoped to the merchant. The keys stored before the upgrade move to
that scope, so a retry across the upgrade still replays its answer. A key sent with two API
keys before the upgrade (a rotation under way: two rows, two payments) keeps its first
request's row, so its retry replays the first payment; the other row is left where nothing
reads it and expires within 24 h.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_merchant_idempotency_scope"
down_revision: str | None = "0010_console_sign_outs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MERCHANT = "merchant"  # idempotency.MERCHANT_SCOPE, as of this revision


def upgrade() -> None:
    # Per key, the row of its first request (the oldest; by scope between equals) moves,
    # unless the merchant's scope holds the key already. One row per key matches, so no two
    # land on the same primary key.
    op.get_bind().execute(
        sa.text(
            "UPDATE idempotency_keys SET scope = :merchant WHERE scope <> :merchant "
            "AND NOT EXISTS (SELECT 1 FROM idempotency_keys AS mine "
            "WHERE mine.key = idempotency_keys.key AND mine.scope = :merchant) "
            "AND scope = (SELECT first.scope FROM idempotency_keys AS first "
            "WHERE first.key = idempotency_keys.key "
            "ORDER BY first.created_at, first.scope LIMIT 1)"
        ),
        {"merchant": _MERCHANT},
    )


def downgrade() -> None:
    # The key ids they came from are not stored anywhere: the keys stay the merchant's, and
    # the older code will not find them (they expire within 24 h).
    pass
