"""What a payment keeps about its past: transitions, gateway transactions, conflicts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .gateway_results import GatewayResult, GatewayStatus, ResultSource, Signal, TranType, signal_of
from .money import Money
from .states import PaymentState, Trigger


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One entry of a payment's history. ``from_state`` is ``None`` only for creation."""

    from_state: PaymentState | None
    to_state: PaymentState
    trigger: Trigger
    source: ResultSource
    gateway_ref: str | None
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayTransaction:
    """The latest status of one gateway transaction of this payment (its own, or a follow-up)."""

    tran_ref: str
    previous_tran_ref: str | None
    tran_type: TranType
    status: GatewayStatus | None
    amount: Money
    at: datetime
    charged: Money | None = None
    """What PayTabs reported charging (``tran_total``/``tran_currency``), when it said."""
    response_code: str = ""
    response_message: str = ""

    @classmethod
    def from_result(cls, result: GatewayResult, *, at: datetime) -> GatewayTransaction:
        """Record ``result``; ``at`` is its transaction time if the gateway sent one."""
        return cls(
            tran_ref=result.tran_ref,
            previous_tran_ref=result.previous_tran_ref,
            tran_type=result.tran_type,
            status=result.status,
            amount=result.amount,
            at=result.transaction_time or at,
            charged=result.charged,
            response_code=result.response_code,
            response_message=result.response_message,
        )

    @property
    def signal(self) -> Signal:
        """What the recorded status means for this transaction type."""
        return signal_of(self.status, self.tran_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConflictNote:
    """A result that contradicted the decided payment, or a quarantined one that says money
    moved on its cart (its reason starts with ``quarantined:``). Kept for humans; never
    applied."""

    tran_ref: str
    tran_type: TranType
    reported_status: GatewayStatus | None
    state: PaymentState
    source: ResultSource
    at: datetime
    reason: str

    @property
    def quarantined(self) -> bool:
        """A quarantined result noted for review, not a contradiction of the decided payment:
        the genuine result for the same transaction may still arrive and apply."""
        return self.reason.startswith(QUARANTINED_NOTE)


#: How a quarantined result's note starts (``notes.record_conflict``).
QUARANTINED_NOTE = "quarantined: "


def pending_total(
    records: Iterable[GatewayTransaction],
    tran_type: TranType,
    currency: str,
    *,
    excluding: str | None = None,
) -> Money:
    """The amount of ``tran_type`` follow-ups still pending, leaving out ``excluding``."""
    return Money(
        sum(
            record.amount.minor_units
            for record in records
            if record.tran_type is tran_type
            and record.tran_ref != excluding
            and record.signal is Signal.FOLLOW_UP_PENDING
        ),
        currency,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowUpHold:
    """A capture, refund or void sent to the gateway and not answered yet.

    One at a time per payment: two follow-ups in flight could both pass the amount checks, and
    PayTabs may take two identical refunds for one duplicate. ``sequence`` makes each
    follow-up's request unique (so a second, legitimate refund is never a "duplicate"), while a
    re-send of the same follow-up stays identical.
    """

    kind: TranType
    amount: Money
    parent_tran_ref: str
    sequence: int
    started_at: datetime
