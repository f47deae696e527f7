"""Payment lifecycle events: past tense, frozen, with ids that cannot change on a retry.

The payment appends these to ``Payment.pending_events``; storage drains them into the outbox in
the same transaction as the state change, and the relay wraps each in a CloudEvents 1.0 envelope
(``id`` = ``event_id``, ``type``, ``subject`` = payment id, ``time`` = ``occurred_at``, ``data``).
docs/states.md shows one envelope per type.

Rules:

- One specific event per outcome. ``payment.failed`` is only for a payment that did not go
  through: declined (D), gateway error (E), rejected by the gateway when the page was requested,
  or no gateway record after an ambiguous failure. A cancelled page emits ``payment.cancelled``,
  an expired page or authorisation ``payment.expired``, a released authorisation
  ``payment.voided``: never ``payment.failed`` as well.
- ``event_id`` is a UUIDv5 of the payment id, the type and, for events that can happen more than
  once per payment (captures, refunds, conflicts), the gateway transaction they are about. The
  same step applied again can therefore never mint a second id.
- ``data`` holds JSON-safe scalars only: amounts are decimal strings with the currency's
  exponent (``"1.250"`` KWD) next to ``currency``; times are ISO 8601; never floats.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import ClassVar, Final, TypeAlias

from .gateway_results import GatewayStatus, ResultSource, TranType
from .money import Money
from .records import QUARANTINED_NOTE
from .states import PaymentState

EVENT_NAMESPACE: Final = uuid.UUID("98a769d9-cdcf-4da7-9fe9-880ef34e0487")
"""Namespace of every event id. Never change it: every consumer dedupes on these ids."""

JsonScalar: TypeAlias = str | int | bool | None
EventData: TypeAlias = dict[str, JsonScalar]


def event_id_for(payment_id: str, event_type: str, occurrence: str = "") -> str:
    """The stable id of an event; ``occurrence`` tells repeatable events apart (a refund's ref)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{payment_id}\n{event_type}\n{occurrence}"))


class FailureReason(StrEnum):
    """Why a payment failed; only the outcomes that have no event of their own."""

    DECLINED = "declined"  # D
    ERROR = "error"  # E
    GATEWAY_REJECTED = "gateway_rejected"  # 4xx when the page was requested
    NO_GATEWAY_RECORD = "no_gateway_record"  # ambiguous failure, and PayTabs has no transaction


class ExpiryCause(StrEnum):
    """What expired."""

    GATEWAY_EXPIRED = "gateway_expired"  # PayTabs reported X before anything was paid
    PAGE_TTL_PASSED = "page_ttl_passed"  # our page TTL passed and PayTabs has no transaction
    AUTHORIZATION_EXPIRED = "authorization_expired"  # X on an authorisation never captured


def _json_fields(event: PaymentEvent) -> EventData:
    """Every field but ``occurred_at`` (the envelope's ``time``) as a JSON-safe scalar, in field
    order: enums by value, times in ISO 8601, money as a decimal string. The ``amount`` field
    also gives ``currency`` beside it; another sum (``refunded_total``) is in the same currency."""
    data: EventData = {}
    for spec in fields(event):
        name = spec.name
        if name == "occurred_at":
            continue
        value = getattr(event, name)
        if isinstance(value, Money):
            data[name] = value.format()
            if name == "amount":
                data["currency"] = value.currency
        elif isinstance(value, Enum):
            data[name] = value.value
        elif isinstance(value, datetime):
            # RFC 3339 in UTC with "Z", as the envelope's time and the API write it
            data[name] = value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
        else:
            data[name] = value
    return data


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentEvent:
    """Fields every payment event has. ``state`` is the payment's state after the event."""

    type: ClassVar[str] = "payment"

    payment_id: str
    cart_id: str
    state: PaymentState
    occurred_at: datetime

    @property
    def event_id(self) -> str:
        """Stable: derived, never drawn at random, so a retry cannot invent a second id."""
        return event_id_for(self.payment_id, self.type, self._occurrence())

    @property
    def data(self) -> EventData:
        """The event's JSON-safe payload: its fields, one generic conversion for every type."""
        return _json_fields(self)

    def _occurrence(self) -> str:
        return ""  # events that happen at most once per payment need no discriminator


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentCreated(PaymentEvent):
    """A payment was accepted (idempotency key and cart id were new)."""

    type: ClassVar[str] = "payment.created"

    amount: Money
    tran_type: TranType
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentInitiated(PaymentEvent):
    """The hosted payment page exists: the customer can be sent to it."""

    type: ClassVar[str] = "payment.initiated"

    tran_ref: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentAuthorized(PaymentEvent):
    """The amount is reserved on the customer's card; capture or void it next."""

    type: ClassVar[str] = "payment.authorized"

    tran_ref: str
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentCaptured(PaymentEvent):
    """An authorisation was captured; ``payment.completed`` follows."""

    type: ClassVar[str] = "payment.captured"

    tran_ref: str
    previous_tran_ref: str | None
    amount: Money

    def _occurrence(self) -> str:
        return self.tran_ref


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentCompleted(PaymentEvent):
    """Money moved. Emitted once, on the first entry into COMPLETED; fulfil the order on it."""

    type: ClassVar[str] = "payment.completed"

    tran_ref: str
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFailed(PaymentEvent):
    """The payment did not go through; ``reason`` says why."""

    type: ClassVar[str] = "payment.failed"

    reason: FailureReason
    tran_ref: str | None
    response_code: str
    response_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentCancelled(PaymentEvent):
    """The customer cancelled the payment page (PayTabs status C)."""

    type: ClassVar[str] = "payment.cancelled"

    tran_ref: str
    response_code: str
    response_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentExpired(PaymentEvent):
    """Nothing was paid in time, or an authorisation lapsed; ``cause`` says which."""

    type: ClassVar[str] = "payment.expired"

    cause: ExpiryCause
    tran_ref: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentVoided(PaymentEvent):
    """An authorisation was released; the customer was never charged."""

    type: ClassVar[str] = "payment.voided"

    tran_ref: str
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRefunded(PaymentEvent):
    """One refund succeeded; one event per refund transaction."""

    type: ClassVar[str] = "payment.refunded"

    tran_ref: str
    previous_tran_ref: str | None
    amount: Money
    refunded_total: Money
    fully_refunded: bool

    def _occurrence(self) -> str:
        return self.tran_ref


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentConflict(PaymentEvent):
    """The gateway contradicted a decided payment, or reported money moving on its cart in a
    way it cannot accept (quarantined; the reason says why). Not applied: a human must look."""

    type: ClassVar[str] = "payment.conflict"

    tran_ref: str
    tran_type: TranType
    reported_status: GatewayStatus | None
    source: ResultSource
    reason: str

    def _occurrence(self) -> str:
        # A quarantined result's note and a later conflict about the same transaction are
        # two events, not one event id delivered once.
        kind = "/quarantined" if self.reason.startswith(QUARANTINED_NOTE) else ""
        return f"{self.tran_ref}/{self.reported_status or '-'}{kind}"


#: Every type of event a payment emits: what the events feed and its filters can hold.
EVENT_TYPES: Final = frozenset(
    event.type
    for event in (
        PaymentCreated,
        PaymentInitiated,
        PaymentAuthorized,
        PaymentCaptured,
        PaymentCompleted,
        PaymentFailed,
        PaymentCancelled,
        PaymentExpired,
        PaymentVoided,
        PaymentRefunded,
        PaymentConflict,
    )
)
