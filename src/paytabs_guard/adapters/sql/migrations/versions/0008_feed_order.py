"""The events feed's order on PostgreSQL: each outbox row records the transaction that wrote it.

Revision ID: 0008_feed_order
Revises: 0007_pending_deliveries
Create Date: 2026-12-04

PostgreSQL hands out ``seq`` when a row is inserted, not when its transaction commits. A feed
that pages by ``seq`` alone could show seq 2 while seq 1 was still uncommitted, move its
cursor past 1, and never show it. Each row now keeps its transaction's id (``txid``, from
``pg_current_xact_id()``), and the feed pages by ``(txid, seq)`` and shows only rows of
transactions older than every transaction still running (``pg_snapshot_xmin``): a row that
commits later always sorts after the cursor. The rows already stored get this migration's
transaction id, so they keep their ``seq`` order and come before every new one.

SQLite has one writer at a time, so its ``seq`` order is commit order: the column stays NULL
there, and the partial index holds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_feed_order"
down_revision: str | None = "0007_pending_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECORDED = sa.text("txid IS NOT NULL")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # xid8 as bigint: comparable with the snapshot's xmin, and one column type on both
    # databases (a 64-bit transaction id counts up and never wraps).
    default = sa.text("(pg_current_xact_id()::text::bigint)") if postgres else None
    op.add_column(
        "outbox", sa.Column("txid", sa.BigInteger(), nullable=True, server_default=default)
    )
    op.create_index(
        "ix_outbox_feed",
        "outbox",
        ["txid", "seq"],
        sqlite_where=_RECORDED,
        postgresql_where=_RECORDED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_feed", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("txid")
