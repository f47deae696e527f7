"""Applying a gateway result (callback, query, reconciliation, follow-up response) to a payment.

A gateway result is checked in this order; the first rule that fires decides the ``Outcome``:

1. a browser return                                        → IGNORED (query the gateway now)
2. cannot be this payment's (screening.py)                 → QUARANTINED; noted on the
   payment for review, once, when it says money moved on the payment's own cart
3. this transaction with this status already recorded      → DUPLICATE
4. a capture, void or refund that is pending or has failed → recorded beside the state
   (APPLIED without a transition, follow_ups.py), or DUPLICATE / STALE / CONFLICT against its
   earlier record
5. the transition table, through ``decide``                → APPLIED, DUPLICATE, STALE,
                                                             CONFLICT or ILLEGAL

A transition goes through ``Payment._move``, like every other change of state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from . import emission
from .checks import require_aware
from .follow_ups import record_follow_up
from .gateway_results import GatewayResult, ResultSource, Signal
from .notes import record_conflict
from .outcome import Effect, Outcome, explain
from .records import GatewayTransaction
from .screening import describe, needs_review, quarantine_reason
from .states import MONEY_MOVED_STATES, OutcomeKind, PaymentState, Trigger, decide

if TYPE_CHECKING:
    from .payment import Payment


def apply_result(
    payment: Payment, result: GatewayResult, *, at: datetime, currency_conversion: bool
) -> Outcome:
    """``Payment.apply_gateway_result``: the rules above, in order."""
    require_aware(at)
    if result.source is ResultSource.BROWSER_RETURN:
        return payment._unchanged(
            OutcomeKind.IGNORED,
            "a browser return never decides a payment; query the gateway to confirm it",
        )
    problem = quarantine_of(payment, result, currency_conversion=currency_conversion)
    if problem is not None:
        if needs_review(payment, result) and not _noted(payment, result, quarantined=True):
            kind = OutcomeKind.QUARANTINED
            return record_conflict(payment, result, at=at, reason=problem, kind=kind)
        return payment._unchanged(OutcomeKind.QUARANTINED, problem)
    if _already_seen(payment, result):
        return payment._unchanged(OutcomeKind.DUPLICATE, f"{describe(result)} was already recorded")
    trigger = _trigger_for(payment, result)
    if trigger is None:
        return record_follow_up(payment, result, at=at)
    state = payment.state
    visited = payment.visited_states
    kind = decide(state, trigger, visited=visited)
    reason = explain(kind, state, trigger, result)
    if kind is OutcomeKind.CONFLICT:
        return record_conflict(payment, result, at=at, reason=reason)
    if kind is not OutcomeKind.APPLIED:
        return payment._unchanged(kind, reason)
    emit = emission.for_result(
        payment,
        trigger,
        result,
        previous=state,
        first_completion=PaymentState.COMPLETED not in visited,
    )
    return payment._move(
        trigger,
        source=result.source,
        at=at,
        reason=reason,
        gateway_ref=result.tran_ref,
        effect=_effect_of(payment, trigger, result, at=at),
        emit=emit,
    )


def quarantine_of(
    payment: Payment, result: GatewayResult, *, currency_conversion: bool
) -> str | None:
    """Why :func:`apply_result` would quarantine ``result`` (rules 1 and 2), or None; reads
    the payment and changes nothing, so a caller may ask before deciding anything else."""
    if result.source is ResultSource.BROWSER_RETURN:
        return None  # ignored, never quarantined
    return quarantine_reason(payment, result, currency_conversion=currency_conversion)


def _already_seen(payment: Payment, result: GatewayResult) -> bool:
    known = payment.transaction(result.tran_ref)
    if known is not None and known.status == result.status:
        return True
    return _noted(payment, result, quarantined=False)


def _noted(payment: Payment, result: GatewayResult, *, quarantined: bool) -> bool:
    """This transaction with this status is noted already: as a conflict (then it is a
    duplicate), or as a quarantined result for review (once is enough: the callback, the IPN
    and every reconciliation pass may bring it again; the genuine result may still apply)."""
    return any(
        note.tran_ref == result.tran_ref
        and note.reported_status == result.status
        and note.quarantined is quarantined
        for note in payment.conflicts
    )


_TRIGGERS: Final[Mapping[Signal, Trigger]] = {
    Signal.PAGE_OPEN: Trigger.PAGE_FOUND,
    Signal.PENDING: Trigger.PENDING,
    Signal.HELD: Trigger.HELD,
    Signal.CHARGED: Trigger.CHARGED,
    Signal.AUTHORIZED: Trigger.AUTHORIZED,
    Signal.CAPTURED: Trigger.CAPTURED,
    Signal.DECLINED: Trigger.DECLINED,
    Signal.CANCELLED: Trigger.CANCELLED,
    Signal.EXPIRED: Trigger.EXPIRED,
    Signal.VOIDED: Trigger.VOIDED,
}
"""The trigger each signal fires. A refund's depends on the amount; the follow-up signals
(pending, failed) and NOT_A_PAYMENT fire none: they are recorded beside the state."""


def _trigger_for(payment: Payment, result: GatewayResult) -> Trigger | None:
    """The table trigger ``result`` fires; None for follow-ups that never move the state."""
    signal = result.signal
    if signal is Signal.REFUNDED:
        # Before the sale is known, measure against the payment's amount: the table then
        # refuses the refund anyway.
        base = payment.captured if payment.state in MONEY_MOVED_STATES else payment.amount
        full = base <= payment.refunded + result.amount
        return Trigger.FULL_REFUND if full else Trigger.PARTIAL_REFUND
    return _TRIGGERS.get(signal)


def _effect_of(
    payment: Payment, trigger: Trigger, result: GatewayResult, *, at: datetime
) -> Effect:
    # A payment that never learnt its tran_ref (UNKNOWN) learns it from the first result
    # that fits: the parent of a capture or APM sale, or the transaction itself.
    adopt = (result.previous_tran_ref or result.tran_ref) if payment.tran_ref is None else None
    moved = trigger in (Trigger.CHARGED, Trigger.CAPTURED)
    refund = trigger in (Trigger.PARTIAL_REFUND, Trigger.FULL_REFUND)
    return Effect(
        adopt_tran_ref=adopt,
        record=GatewayTransaction.from_result(result, at=at),
        captured=result.amount if moved else None,
        refunded=payment.refunded + result.amount if refund else None,
    )
