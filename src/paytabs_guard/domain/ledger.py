"""Money bookkeeping of a payment: what its transactions say was charged, captured, refunded or
is pending, and the guards a capture, void or refund request must pass before it is sent.

``Payment`` exposes these as properties and ``ensure_can_*`` methods; they read the payment and
never change it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .checks import check_operation_amount
from .declines import FAILED_STATUSES, PaymentError, payment_error
from .errors import (
    CaptureExceedsAuthorized,
    CaptureNotAllowed,
    FollowUpInProgress,
    PaymentNotVoidable,
    RefundExceedsCaptured,
    RefundNotAllowed,
)
from .events import FailureReason
from .gateway_results import FOLLOW_UP_TYPES, GatewayStatus, Signal, TranType
from .money import Money
from .records import GatewayTransaction, pending_total
from .states import MONEY_MOVED_STATES, REFUNDABLE_STATES, PaymentState, Trigger

if TYPE_CHECKING:
    from .payment import Payment


def pending(payment: Payment, kind: TranType) -> Money:
    """Follow-ups of ``kind`` the gateway reported pending (``P``): not done, not repeatable."""
    return pending_total(payment.transactions, kind, payment.amount.currency)


def refundable(payment: Payment) -> Money:
    """What a refund may still take: captured - refunded - pending refunds."""
    return payment.captured - payment.refunded - payment.pending_refunds


def last_payment_error(payment: Payment) -> PaymentError | None:
    """Why the payment failed, from the latest failed attempt of its own transaction."""
    if payment.state not in (PaymentState.FAILED, PaymentState.EXPIRED):
        return None
    for record in reversed(payment.transactions):
        if record.tran_type in FOLLOW_UP_TYPES or record.status not in FAILED_STATUSES:
            continue
        return payment_error(record.status, record.response_code, record.response_message)
    return None


def failure_reason(payment: Payment) -> FailureReason | None:
    """Why a failed payment failed, as its ``payment.failed`` event said; None unless failed.

    The step that failed it tells apart PayTabs refusing the create and a create PayTabs
    never recorded; a result that failed it (``D`` or ``E``) is read from its transaction."""
    if payment.state is not PaymentState.FAILED:
        return None
    failing = next(entry for entry in reversed(payment.history) if entry.to_state is payment.state)
    if failing.trigger is Trigger.GATEWAY_REJECTED:
        return FailureReason.GATEWAY_REJECTED
    if failing.trigger is Trigger.NO_GATEWAY_RECORD:
        return FailureReason.NO_GATEWAY_RECORD
    error = last_payment_error(payment)
    if error is not None and error.status is GatewayStatus.ERROR:
        return FailureReason.ERROR
    return FailureReason.DECLINED


def charged(payment: Payment) -> Money | None:
    """What the authorised result of the payment's own transaction says was charged."""
    for record in reversed(payment.transactions):
        if (
            record.tran_type not in FOLLOW_UP_TYPES
            and record.status is GatewayStatus.AUTHORIZED
            and record.charged is not None
            and record.charged.minor_units > 0
        ):
            return record.charged
    return None


def refund_reference(payment: Payment) -> str | None:
    """The transaction PayTabs refunds against: the sale, the APM's sale, or the capture."""
    if payment.state not in MONEY_MOVED_STATES:
        return None
    settled = Signal.CAPTURED if payment.tran_type is TranType.AUTH else Signal.CHARGED
    for record in payment.transactions:
        if record.previous_tran_ref is not None and record.signal is settled:
            return record.tran_ref
    return payment.tran_ref


def ensure_can_refund(payment: Payment, amount: Money) -> None:
    """Raise unless a refund of ``amount`` may be sent now."""
    if payment.state not in REFUNDABLE_STATES:
        raise RefundNotAllowed(payment.id, payment.state)
    check_operation_amount(payment.amount, amount)
    if payment.refundable < amount:
        raise RefundExceedsCaptured(payment.id, amount, payment.refundable)


def ensure_can_capture(payment: Payment, amount: Money) -> None:
    """Raise unless a capture of ``amount`` may be sent now (one capture per payment)."""
    if payment.state is not PaymentState.AUTHORIZED:
        raise CaptureNotAllowed(payment.id, payment.state)
    check_operation_amount(payment.amount, amount)
    # The payment's one capture may still succeed: another sent beside it would be a second
    # capture, whose success the payment quarantines while PayTabs takes the money. A void or
    # release still pending may yet end the authorisation a capture would take from.
    _refuse_while_pending(payment, _ENDS_AN_AUTHORISATION)
    available = payment.amount - payment.captured - payment.pending_captures
    if available < amount:
        raise CaptureExceedsAuthorized(payment.id, amount, available)


#: What settles an authorisation: after one of these succeeds, none of them can be sent.
_ENDS_AN_AUTHORISATION: Final = frozenset({TranType.CAPTURE, TranType.VOID, TranType.RELEASE})


def _refuse_while_pending(payment: Payment, kinds: frozenset[TranType]) -> None:
    """Raise FollowUpInProgress (a 409 whose key is freed for the retry) while PayTabs reports
    a follow-up of ``kinds`` pending (``P``, ``H``): until it settles, no one can say whether
    another may be sent."""
    pending: GatewayTransaction | None = next(
        (
            record
            for record in payment.transactions
            if record.tran_type in kinds and record.signal is Signal.FOLLOW_UP_PENDING
        ),
        None,
    )
    if pending is not None:
        kind = pending.tran_type.value
        raise FollowUpInProgress(payment.id, payment.state, kind, pending.at.isoformat())


def ensure_can_void(payment: Payment) -> None:
    """Raise unless the authorisation may be released now."""
    if payment.state is not PaymentState.AUTHORIZED:
        raise PaymentNotVoidable(
            payment.id, payment.state, "only an authorized payment can be voided"
        )
    if payment.captured.minor_units:
        reason = "part of it is captured; refund instead"
        raise PaymentNotVoidable(payment.id, payment.state, reason)
    # A pending capture may yet be declined, and then the void is right: a refusal of the
    # moment, not a rule ("refund instead", kept for the key, would be wrong then).
    _refuse_while_pending(payment, _ENDS_AN_AUTHORISATION)
