"""Delivery bookkeeping, on the same ``metadata`` as the payments tables (migration 0002).

``event_deliveries`` holds one row per (event, sink): the relay's work queue, its retry state
and, with ``status = 'dead'``, the dead letters an operator lists and replays. Envelopes are
not copied: a delivery points at its ``outbox`` row by ``seq`` (a foreign key, so an outbox row
cannot be purged while a delivery still needs it).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
)

from paytabs_guard.adapters.sql.tables import UtcDateTime, metadata

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"

event_deliveries = Table(
    "event_deliveries",
    metadata,
    # SQLite only autoincrements an INTEGER PRIMARY KEY (an alias of its rowid), not BIGINT.
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("seq", BigInteger, ForeignKey("outbox.seq"), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("sink", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("dead_at", UtcDateTime, nullable=True),
    UniqueConstraint("event_id", "sink"),
    CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    Index("ix_event_deliveries_due", "sink", "status", "next_attempt_at"),
    Index("ix_event_deliveries_order", "sink", "payment_id", "seq"),
)
"""One row per event and sink. ``seq`` orders deliveries per (sink, payment)."""
