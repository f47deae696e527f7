"""Follow-ups (capture, void, refund) beside the payment's state: the hold that reserves the
payment while one is in flight, and the record of one the gateway reports pending or failed.

Neither moves the state; a follow-up that succeeds fires a transition through the table
(results.py) instead.

A follow-up is *unsettled* while its hold stays (its answer was lost: PayTabs may or may not
have done it) or while it is recorded pending. Reconciliation asks PayTabs about such payments
and applies what it holds like any other result (``answers_hold``, ``settles_follow_up``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from .checks import require_aware
from .errors import FollowUpInProgress
from .gateway_results import FOLLOW_UP_TYPES, GatewayResult, Signal, TranType
from .money import Money
from .notes import record_conflict
from .outcome import Outcome
from .records import FollowUpHold, GatewayTransaction
from .screening import describe
from .states import DECIDED_STATES, MONEY_MOVED_STATES, OutcomeKind

if TYPE_CHECKING:
    from .payment import Payment

HOLD_STALE_AFTER: Final = timedelta(minutes=15)
"""A hold this old belonged to a request whose answer never came, and reconciliation has had
time to ask PayTabs what it did: it no longer protects anything. Far longer than a request (its
timeouts and retries) takes by default; the service holds for the longest write instead when
that is longer (``PAYTABS_OPERATION_DEADLINE`` + ``CIRCUIT_BREAKER_TIMEOUT``), so a hold that
lapses is never one still in flight."""


def take_hold(
    payment: Payment,
    kind: TranType,
    amount: Money,
    parent_tran_ref: str,
    *,
    at: datetime,
    stale_after: timedelta,
) -> FollowUpHold:
    """Reserve ``payment`` for one follow-up, unless a fresh hold is already there."""
    require_aware(at)
    hold = payment.hold
    if hold is not None and at - hold.started_at < stale_after:
        raise FollowUpInProgress(
            payment.id, payment.state, hold.kind.value, hold.started_at.isoformat()
        )
    sequence = 1 + sum(1 for t in payment.transactions if t.tran_type is kind)
    payment.hold = FollowUpHold(
        kind=kind, amount=amount, parent_tran_ref=parent_tran_ref, sequence=sequence,
        started_at=at,
    )  # fmt: skip
    return payment.hold


def answers(kind: TranType, answer: TranType) -> bool:
    """Does a result of type ``answer`` settle a follow-up of ``kind``? (release ends a void)"""
    return answer is kind or {kind, answer} == {TranType.VOID, TranType.RELEASE}


def answers_hold(payment: Payment, result: GatewayResult) -> bool:
    """Is ``result`` the first answer to the follow-up ``payment`` holds for?

    Of the hold's kind, about its parent, for the held amount, and a transaction the payment
    did not know yet: every transaction known when the hold was taken is an earlier follow-up,
    and one recorded since released the hold already. So a late repeat of an earlier answer (a
    duplicate, a second reconciler) never releases a later follow-up's hold; nor does an
    earlier refund whose hold was given up, reported late by its callback (releasing the hold
    would let a third follow-up go out beside the one in flight)."""
    hold = payment.hold
    return hold is not None and _beside_hold(payment, result) and result.amount == hold.amount


def _beside_hold(payment: Payment, result: GatewayResult) -> bool:
    """A follow-up the payment does not know, of the held kind and about the held parent: the
    hold's answer, or another made meanwhile (PayTabs' dashboard, an earlier one that landed
    late). Either is money that moved."""
    hold = payment.hold
    return (
        hold is not None
        and result.previous_tran_ref == hold.parent_tran_ref
        and answers(hold.kind, result.tran_type)
        and payment.transaction(result.tran_ref) is None
    )


def awaits_follow_up(payment: Payment) -> bool:
    """A follow-up of ``payment`` is unsettled: held (sent, answer not applied) or pending."""
    return payment.hold is not None or any(
        t.signal is Signal.FOLLOW_UP_PENDING for t in payment.transactions
    )


def settles_follow_up(payment: Payment, result: GatewayResult) -> bool:
    """Is ``result`` news about an unsettled follow-up of ``payment``: the answer to its hold,
    or what became of a follow-up recorded pending? (What reconciliation applies to a payment
    that is decided already; anything else PayTabs lists for its cart is old news.)"""
    if result.tran_type not in FOLLOW_UP_TYPES:
        return False
    known = payment.transaction(result.tran_ref)
    if known is not None:
        return known.signal is Signal.FOLLOW_UP_PENDING
    return _beside_hold(payment, result)


def release_lapsed_hold(
    payment: Payment, *, at: datetime, stale_after: timedelta = HOLD_STALE_AFTER
) -> bool:
    """Drop a hold older than ``stale_after`` (call once PayTabs, asked, held no answer to
    it: the follow-up never took effect). True when it was dropped."""
    require_aware(at)
    hold = payment.hold
    if hold is None or at - hold.started_at < stale_after:
        return False
    payment.hold = None
    return True


def record_follow_up(payment: Payment, result: GatewayResult, *, at: datetime) -> Outcome:
    """A capture, void or refund that is pending or failed: kept beside the state."""
    settled = MONEY_MOVED_STATES if result.tran_type is TranType.REFUND else DECIDED_STATES
    if payment.tran_ref is None or payment.state not in settled:
        return payment._unchanged(
            OutcomeKind.ILLEGAL,
            f"{describe(result)} came before the payment was decided; deliver it later",
        )
    pending = result.signal is Signal.FOLLOW_UP_PENDING
    known = payment.transaction(result.tran_ref)
    if known is not None:
        was = known.signal
        if pending:
            kind = OutcomeKind.DUPLICATE if was is result.signal else OutcomeKind.STALE
            return payment._unchanged(kind, f"{describe(result)}: already {known.status}")
        if was is Signal.FOLLOW_UP_FAILED:
            return payment._unchanged(OutcomeKind.DUPLICATE, f"{describe(result)}: already failed")
        if was is not Signal.FOLLOW_UP_PENDING:
            reason = f"{describe(result)} after it succeeded ({known.status}); review it"
            return record_conflict(payment, result, at=at, reason=reason)
    payment._upsert(GatewayTransaction.from_result(result, at=at))
    payment._touch(at)
    news = "pending" if pending else "did not happen"
    reason = f"{describe(result)} recorded: {news}; the payment stays {payment.state}"
    return Outcome(OutcomeKind.APPLIED, payment.state, payment.state, reason)
