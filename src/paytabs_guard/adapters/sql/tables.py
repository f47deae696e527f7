"""The schema as SQLAlchemy Core tables: one ``metadata`` for every table we own.

Migrations are hand-written (``migrations/versions``); a test checks that they produce exactly
these tables. Money is integer minor units (never float); times are UTC instants
(``UtcDateTime``); enum values are stored as their ``.value`` text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    CHAR,
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""Every table of paytabs-guard (other adapters add theirs to it, e.g. event deliveries)."""


class UtcDateTime(TypeDecorator[datetime]):
    """An aware instant, stored in UTC: ``timestamptz`` on PostgreSQL, fixed-width ISO text on
    SQLite (which has no time zones, so the zone is dropped on the way in and put back on the way
    out). Naive datetimes are refused rather than guessed at."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value!r} has no time zone; store aware datetimes only")
        utc = value.astimezone(UTC)
        # Same width for every value, so SQLite's text comparison is time order.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - TypeDecorator's signature
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _autoincrement_key() -> BigInteger:
    # SQLite only autoincrements an INTEGER PRIMARY KEY (an alias of its rowid), not BIGINT.
    return BigInteger().with_variant(Integer(), "sqlite")


# The merchant's string map, echoed back: JSONB on PostgreSQL so it can be queried.
_MERCHANT_METADATA = JSON().with_variant(JSONB(), "postgresql")

_HOLD = (
    "hold_kind",
    "hold_amount_minor",
    "hold_parent_tran_ref",
    "hold_sequence",
    "hold_started_at",
)
_HOLD_ALL_OR_NONE = "({}) OR ({})".format(
    " AND ".join(f"{name} IS NULL" for name in _HOLD),
    " AND ".join(f"{name} IS NOT NULL" for name in _HOLD),
)

# Reconciliation's questions about follow-ups (migration 0009), each answered by a partial
# index as small as the follow-ups in flight: which payments hold one, and which have one
# PayTabs reported pending (P or H, or no status yet, on a capture, void, release or refund;
# see gateway_results.signal_of). Written into the SQL, not bound: a partial index cannot
# serve a bound value, and SQLite uses one only for a query that repeats its WHERE term.
HELD: Final = text("hold_started_at IS NOT NULL")
PENDING_FOLLOW_UP: Final = text(
    "tran_type IN ('capture', 'void', 'release', 'refund')"
    " AND (status IS NULL OR status IN ('P', 'H'))"
)

payments = Table(
    "payments",
    metadata,
    Column("id", Text, primary_key=True),
    Column("cart_id", String(64), nullable=False, unique=True),  # the current attempt's
    Column("profile_id", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("tran_type", String(32), nullable=False),
    Column("description", String(128), nullable=False),
    Column("state", String(32), nullable=False),
    Column("tran_ref", Text, nullable=True, unique=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("redirect_url", Text, nullable=True),
    Column("return_url", Text, nullable=True),
    Column("metadata", _MERCHANT_METADATA, nullable=False),
    Column("saved_card_id", Text, nullable=True),  # the card it saves or charges
    Column("captured_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("conflict_count", Integer, nullable=False),
    # The follow-up (capture, refund, void) sent and not answered yet: all five or none.
    Column("hold_kind", String(32), nullable=True),
    Column("hold_amount_minor", BigInteger, nullable=True),
    Column("hold_parent_tran_ref", Text, nullable=True),
    Column("hold_sequence", Integer, nullable=True),
    Column("hold_started_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("amount_minor > 0", name="amount_positive"),
    CheckConstraint("captured_minor >= 0 AND refunded_minor >= 0", name="money_not_negative"),
    CheckConstraint("conflict_count >= 0", name="conflict_count_not_negative"),
    CheckConstraint("version >= 1", name="version_positive"),
    CheckConstraint(_HOLD_ALL_OR_NONE, name="hold_all_or_none"),
    Index("ix_payments_state_updated_at", "state", "updated_at"),
    Index("ix_payments_created_at_id", "created_at", "id"),
    Index("ix_payments_state_expires_at", "state", "expires_at", "id"),  # page deadlines
    # payments holding a follow-up, by when it was sent (reconciliation)
    Index(
        "ix_payments_hold_started_at",
        "hold_started_at",
        sqlite_where=HELD,
        postgresql_where=HELD,
    ),
)
"""One row per payment: its current state and money. ``version`` is the optimistic lock."""

payment_cart_ids = Table(
    "payment_cart_ids",
    metadata,
    Column("cart_id", String(64), primary_key=True),
    Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
    Column("attempt", Integer, nullable=False),  # 1, 2, ...: the order the cart ids were used
    UniqueConstraint("payment_id", "attempt"),
)
"""Every cart id a payment ever used (abandoned ones and the current one): unique across all."""

payment_transitions = Table(
    "payment_transitions",
    metadata,
    Column("id", _autoincrement_key(), primary_key=True, autoincrement=True),
    Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # position in the history, from 0
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("source", String(32), nullable=False),
    Column("gateway_ref", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("payment_id", "seq"),
)
"""The history: append-only; the unique ``seq`` also stops two writers appending one entry."""

gateway_transactions = Table(
    "gateway_transactions",
    metadata,
    Column("tran_ref", Text, primary_key=True),
    Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # keeps the payment's list order
    Column("previous_tran_ref", Text, nullable=True),
    Column("tran_type", String(32), nullable=False),
    Column("status", CHAR(1), nullable=True),  # None: the page exists, nobody paid yet
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    # What PayTabs charged (tran_total, tran_currency); NULL when the source did not say.
    Column("charged_minor", BigInteger, nullable=True),
    Column("charged_currency", CHAR(3), nullable=True),
    # PayTabs' payment_result.response_code / response_message (why an attempt failed).
    Column("response_code", Text, nullable=True),
    Column("response_message", Text, nullable=True),
    UniqueConstraint("payment_id", "seq"),
    # follow-ups PayTabs reported pending, by payment (reconciliation)
    Index(
        "ix_gateway_transactions_pending_follow_up",
        "payment_id",
        sqlite_where=PENDING_FOLLOW_UP,
        postgresql_where=PENDING_FOLLOW_UP,
    ),
)
"""The latest status of each gateway transaction (originating, capture, void, refund)."""

payment_conflicts = Table(
    "payment_conflicts",
    metadata,
    Column("id", _autoincrement_key(), primary_key=True, autoincrement=True),
    Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
    Column("tran_ref", Text, nullable=False),
    Column("tran_type", String(32), nullable=False),
    Column("reported_status", CHAR(1), nullable=True),
    Column("state", String(32), nullable=False),
    Column("source", String(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_payment_conflicts_payment_id", "payment_id"),
)
"""Results that contradicted a decided payment: kept for a human, never applied."""

saved_cards = Table(
    "saved_cards",
    metadata,
    Column("id", Text, primary_key=True),
    Column("customer_id", String(64), nullable=False),
    # The payment that saved the card. No foreign key: the row is inserted in the create's
    # transaction before the payment itself (PostgreSQL writes the payment at commit).
    Column("payment_id", Text, nullable=False, unique=True),
    # PayTabs' token: a credential, never logged nor returned. NULL until PayTabs issued it,
    # and again once the card is deleted (at PayTabs too).
    Column("token", Text, nullable=True),
    Column("tran_ref", Text, nullable=True),  # the transaction that created the token
    Column("card_scheme", String(32), nullable=True),
    Column("last_four", CHAR(4), nullable=True),
    Column("expiry_month", Integer, nullable=True),
    Column("expiry_year", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
    # PayTabs refused the token as unknown (code 209): no more charges; the token is kept, so
    # that a refusal caused by a wrong profile can be undone (docs/saved-cards.md).
    Column("refused_at", UtcDateTime, nullable=True),
    Index("ix_saved_cards_customer_id_created_at", "customer_id", "created_at"),
)
"""Cards customers let the merchant keep (PayTabs tokens), one per payment that saved one."""

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("resource_id", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=False),
    CheckConstraint("status IN ('in_flight', 'completed')", name="status"),
    CheckConstraint(
        "status = 'in_flight' OR (response_status IS NOT NULL AND response_body IS NOT NULL)",
        name="completed_has_response",
    ),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)
"""Idempotency-Key claims and the first response given for each."""

console_sign_outs = Table(
    "console_sign_outs",
    metadata,
    Column("session", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_console_sign_outs_expires_at", "expires_at"),
)
"""Console sessions signed out before their cookie expires (migration 0010): the cookie is
stateless, so signing out must be remembered where every instance looks."""

webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("key", Text, primary_key=True),
    Column("source", String(32), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_webhook_inbox_received_at", "received_at"),
)
"""Deliveries already applied; written in the transaction of their effect."""

_RECORDED: Final = text("txid IS NOT NULL")

outbox = Table(
    "outbox",
    metadata,
    Column("seq", _autoincrement_key(), primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("payment_id", Text, nullable=False, index=True),
    Column("type", Text, nullable=False),
    Column("envelope", Text, nullable=False),  # CloudEvents 1.0 JSON, sent byte for byte
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True),
    Column("claimed_by", Text, nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    # W3C trace context of the traced request that wrote the row (migration 0004), else NULL
    Column("traceparent", Text, nullable=True),
    Column("tracestate", Text, nullable=True),
    # PostgreSQL: the writing transaction's id, filled in by the column's default (migration
    # 0008), which orders the events feed; NULL on SQLite, whose seq order is commit order.
    Column("txid", BigInteger, nullable=True),
    # The events feed on PostgreSQL pages by (txid, seq).
    Index("ix_outbox_feed", "txid", "seq", sqlite_where=_RECORDED, postgresql_where=_RECORDED),
    # The relay's work list: small, because published rows leave it.
    Index(
        "ix_outbox_unpublished",
        "seq",
        sqlite_where=text("published_at IS NULL"),
        postgresql_where=text("published_at IS NULL"),
    ),
    # "An older event of this payment is not fanned out yet", asked by the relay's claim for
    # every candidate delivery (migration 0007).
    Index(
        "ix_outbox_unpublished_payment",
        "payment_id",
        "seq",
        sqlite_where=text("published_at IS NULL"),
        postgresql_where=text("published_at IS NULL"),
    ),
    # SQLite would reuse the highest seq after it is purged; AUTOINCREMENT never does.
    sqlite_autoincrement=True,
)
"""Events written with the state change that caused them; ``seq`` is their order."""
