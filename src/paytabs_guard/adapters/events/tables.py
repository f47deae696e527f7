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
    literal_column,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

from paytabs_guard.adapters.sql.tables import UtcDateTime, metadata

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"

_WALKED: Final = f"status = '{PENDING}' AND next_attempt_at IS NOT NULL"

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
    # Partial indexes (migration 0007): they hold the pending rows only, so they stay as small
    # as the relay's queue while delivered rows pile up, and they are the only index a probe of
    # pending rows can use, whatever the table's statistics say. Queries match them with the
    # status written into the SQL (``has_status``): a bound value could not.
    # The claim walks this one in seq order. Every row has a next_attempt_at: the second
    # condition only keeps the per-payment probes off this index (they say nothing of
    # next_attempt_at, the walk compares it, which implies it is not null). Offered both, with
    # statistics that saw an empty queue, PostgreSQL probed by sink alone and read the whole
    # queue per candidate.
    Index(
        "ix_event_deliveries_pending",
        "sink",
        "seq",
        sqlite_where=text(_WALKED),
        postgresql_where=text(_WALKED),
    ),
    Index(
        "ix_event_deliveries_pending_payment",
        "sink",
        "payment_id",
        "seq",
        sqlite_where=text(f"status = '{PENDING}'"),
        postgresql_where=text(f"status = '{PENDING}'"),
    ),
    Index(
        "ix_event_deliveries_dead",
        "sink",
        "seq",
        sqlite_where=text(f"status = '{DEAD}'"),
        postgresql_where=text(f"status = '{DEAD}'"),
    ),
)
"""One row per event and sink. ``seq`` orders deliveries per (sink, payment)."""


def has_status(column: ColumnElement[str], status: str) -> ColumnElement[bool]:
    """``column = 'status'`` with the status written into the SQL. A partial index serves a
    query only when its condition follows from the query's: PostgreSQL cannot prove that for a
    bound value in a generic (prepared) plan, and SQLite does not try."""
    if status not in (PENDING, DELIVERED, DEAD):
        raise ValueError(f"not a delivery status: {status!r}")
    return column == literal_column(f"'{status}'", Text())


def still_pending(column: ColumnElement[str]) -> ColumnElement[bool]:
    """Pending, for rows already found by their ids: written as "neither delivered nor dead",
    a condition no index of pending rows can serve. The statistics usually see an empty queue
    (it is empty most of the time), so PostgreSQL believes there is about one pending row; when
    such an index matched, it read every pending delivery to find a claim's few by id (110 ms
    per claim with 3,500 pending)."""
    return column.not_in([literal_column(f"'{status}'", Text()) for status in (DELIVERED, DEAD)])


webhook_sink_aliases = Table(
    "webhook_sink_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    Column("sink", Text, nullable=False),
)
"""The service's webhook sinks were named by position (``webhook:1``); migration 0013 renamed
them to ``webhook:<endpoint name>`` by the configuration it ran with, and keeps here which
position was which URL's, so that deliveries an instance of the older version still writes
under a position (a rolling upgrade) move to the same URL's sink, whatever the list is now."""
