"""Follow-ups (capture, void, refund) beside the payment's state: the hold that reserves the
payment while one is in flight, and the record of one the gateway reports pending or failed.

Neither moves the state; a follow-up that succeeds fires a transition through the table
(results.py) instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .checks import require_aware
from .errors import FollowUpInProgress
from .gateway_results import GatewayResult, Signal, TranType
from .money import Money
from .outcome import Outcome
from .records import FollowUpHold, GatewayTransaction
from .screening import describe
from .states import DECIDED_STATES, MONEY_MOVED_STATES, OutcomeKind

if TYPE_CHECKING:
    from .payment import Payment


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
            return payment._record_conflict(result, at=at, reason=reason)
    payment._upsert(GatewayTransaction.from_result(result, at=at))
    payment._touch(at)
    news = "pending" if pending else "did not happen"
    reason = f"{describe(result)} recorded: {news}; the payment stays {payment.state}"
    return Outcome(OutcomeKind.APPLIED, payment.state, payment.state, reason)
