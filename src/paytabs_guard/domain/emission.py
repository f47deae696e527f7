"""Which events a transition emits (the rules are in events.py's docstring).

An emitter is called by ``Payment._move`` *after* the state has moved, with the envelope fields
(payment id, cart id, the new state, the time), and returns the events to queue.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict, assert_never

from .events import (
    ExpiryCause,
    FailureReason,
    PaymentAuthorized,
    PaymentCancelled,
    PaymentCaptured,
    PaymentCompleted,
    PaymentEvent,
    PaymentExpired,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
    PaymentVoided,
)
from .gateway_results import GatewayResult, GatewayStatus
from .states import PaymentState, Trigger

if TYPE_CHECKING:
    from .payment import Payment


class Envelope(TypedDict):
    """The fields every payment event shares."""

    payment_id: str
    cart_id: str
    state: PaymentState
    occurred_at: datetime


Emit = Callable[[Envelope], list[PaymentEvent]]


def no_events(_: Envelope) -> list[PaymentEvent]:
    """For transitions the table marks "—"."""
    return []


def failed(reason: FailureReason, ref: str | None, code: str, message: str) -> Emit:
    """payment.failed with ``reason``."""

    def emit(base: Envelope) -> list[PaymentEvent]:
        return [
            PaymentFailed(
                **base, reason=reason, tran_ref=ref, response_code=code, response_message=message
            )
        ]

    return emit


def for_result(
    payment: Payment,
    trigger: Trigger,
    result: GatewayResult,
    *,
    previous: PaymentState,
    first_completion: bool,
) -> Emit:
    """The events of a transition a gateway result fired; ``previous`` = the state it left."""

    def emit(base: Envelope) -> list[PaymentEvent]:
        ref = result.tran_ref
        match trigger:
            case Trigger.PENDING | Trigger.HELD:
                return []
            case Trigger.PAGE_FOUND:
                return [PaymentInitiated(**base, tran_ref=ref, expires_at=payment.expires_at)]
            case Trigger.AUTHORIZED:
                return [PaymentAuthorized(**base, tran_ref=ref, amount=result.amount)]
            case Trigger.CHARGED:
                return _completed(payment, base, ref, first=first_completion)
            case Trigger.CAPTURED:
                captured = PaymentCaptured(
                    **base,
                    tran_ref=ref,
                    previous_tran_ref=result.previous_tran_ref,
                    amount=result.amount,
                )
                return [captured, *_completed(payment, base, ref, first=first_completion)]
            case Trigger.DECLINED:
                error = result.status is GatewayStatus.ERROR
                why = FailureReason.ERROR if error else FailureReason.DECLINED
                return failed(why, ref, result.response_code, result.response_message)(base)
            case Trigger.CANCELLED:
                cancelled = PaymentCancelled(
                    **base,
                    tran_ref=ref,
                    response_code=result.response_code,
                    response_message=result.response_message,
                )
                return [cancelled]
            case Trigger.EXPIRED:
                lapsed = previous is PaymentState.AUTHORIZED
                cause = ExpiryCause.AUTHORIZATION_EXPIRED if lapsed else ExpiryCause.GATEWAY_EXPIRED
                return [PaymentExpired(**base, cause=cause, tran_ref=ref)]
            case Trigger.VOIDED:
                return [PaymentVoided(**base, tran_ref=ref, amount=result.amount)]
            case Trigger.PARTIAL_REFUND | Trigger.FULL_REFUND:
                refunded = PaymentRefunded(
                    **base,
                    tran_ref=ref,
                    previous_tran_ref=result.previous_tran_ref,
                    amount=result.amount,
                    refunded_total=payment.refunded,
                    fully_refunded=trigger is Trigger.FULL_REFUND,
                )
                return [refunded]
            case (
                Trigger.CREATE
                | Trigger.REQUEST_PAGE
                | Trigger.PAGE_CREATED
                | Trigger.GATEWAY_REJECTED
                | Trigger.AMBIGUOUS_FAILURE
                | Trigger.NO_GATEWAY_RECORD
                | Trigger.PAGE_TTL_PASSED
                | Trigger.NEW_ATTEMPT
            ):
                return []  # our own steps: their command methods bring their own emitters
            case _:
                assert_never(trigger)

    return emit


def _completed(payment: Payment, base: Envelope, ref: str, *, first: bool) -> list[PaymentEvent]:
    # payment.completed is the fulfilment signal: only on the first entry into COMPLETED.
    return [PaymentCompleted(**base, tran_ref=ref, amount=payment.captured)] if first else []
