"""Every (state, trigger) pair fired at a real Payment: legal pairs move it, others do nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from domain_builders import (
    PAGE_REF,
    A,
    C,
    D,
    H,
    P,
    X,
    at,
    follow_up,
    payment_in,
    result,
)

from paytabs_guard.domain.errors import InvalidTransition
from paytabs_guard.domain.gateway_results import GatewayResult, TranType
from paytabs_guard.domain.money import Money
from paytabs_guard.domain.payment import Outcome, Payment
from paytabs_guard.domain.states import TRANSITIONS, OutcomeKind, PaymentState, Trigger, decide

_AUTH_TRIGGERS = {Trigger.AUTHORIZED, Trigger.CAPTURED, Trigger.VOIDED}
PAIRS = [
    (state, trigger)
    for state in PaymentState
    for trigger in Trigger
    if trigger is not Trigger.CREATE  # creation is Payment.create, never a step on a payment
]


def fire(payment: Payment, trigger: Trigger) -> Outcome:
    """Fire ``trigger`` the way production code would: a command or a gateway result."""
    when = at(600)  # long after the page TTL, so expire_page is never refused as too early
    match trigger:
        case Trigger.CREATE:
            raise AssertionError("not a step")
        case Trigger.REQUEST_PAGE:
            return payment.mark_initiating(at=when)
        case Trigger.PAGE_CREATED:
            return payment.page_created(PAGE_REF, None, at=when)
        case Trigger.GATEWAY_REJECTED:
            return payment.initiation_failed("Invalid currency code", at=when, response_code="206")
        case Trigger.AMBIGUOUS_FAILURE:
            return payment.initiation_ambiguous(at=when)
        case Trigger.NO_GATEWAY_RECORD:
            return payment.unknown_resolved_no_record(at=when)
        case Trigger.PAGE_TTL_PASSED:
            return payment.expire_page(at=when)
        case Trigger.NEW_ATTEMPT:
            return payment.new_attempt(f"{payment.cart_id}-2", at=when)
        case Trigger.PAGE_FOUND:
            return payment.apply_gateway_result(result(payment, None), at=when)
        case Trigger.PENDING:
            return payment.apply_gateway_result(result(payment, P), at=when)
        case Trigger.HELD:
            return payment.apply_gateway_result(result(payment, H), at=when)
        case Trigger.CHARGED:
            sale = result(payment, A, tran_type=TranType.SALE)
            return payment.apply_gateway_result(sale, at=when)
        case Trigger.AUTHORIZED:
            auth = result(payment, A, tran_type=TranType.AUTH)
            return payment.apply_gateway_result(auth, at=when)
        case Trigger.DECLINED:
            return payment.apply_gateway_result(result(payment, D), at=when)
        case Trigger.CANCELLED:
            return payment.apply_gateway_result(result(payment, C), at=when)
        case Trigger.EXPIRED:
            return payment.apply_gateway_result(result(payment, X), at=when)
        case Trigger.CAPTURED:
            capture = follow_up(
                payment, TranType.CAPTURE, A, "TSTCAPTURE99", payment.amount, previous=PAGE_REF
            )
            return payment.apply_gateway_result(capture, at=when)
        case Trigger.VOIDED:
            void = follow_up(
                payment, TranType.VOID, A, "TSTVOID99", payment.amount, previous=PAGE_REF
            )
            return payment.apply_gateway_result(void, at=when)
        case Trigger.PARTIAL_REFUND | Trigger.FULL_REFUND:
            return payment.apply_gateway_result(_refund(payment, trigger), at=when)


def _refund(payment: Payment, trigger: Trigger) -> GatewayResult:
    """A refund that is partial or reaches the full amount (over-refunds where nothing is left)."""
    base = payment.captured if payment.captured.minor_units else payment.amount
    left = base - payment.refunded
    if trigger is Trigger.PARTIAL_REFUND:
        amount = Money(base.minor_units // 4, base.currency)
    else:
        amount = left if left.minor_units > 0 else payment.amount
    parent = payment.refund_reference or PAGE_REF
    return follow_up(payment, TranType.REFUND, A, "TSTREFUND99", amount, previous=parent)


@dataclass(frozen=True)
class Snapshot:
    state: PaymentState
    history: int
    transactions: int
    captured: Money
    refunded: Money
    tran_ref: str | None
    events: int

    @classmethod
    def of(cls, payment: Payment) -> Snapshot:
        return cls(
            payment.state,
            len(payment.history),
            len(payment.transactions),
            payment.captured,
            payment.refunded,
            payment.tran_ref,
            len(payment.pending_events),
        )


@pytest.mark.parametrize(("state", "trigger"), PAIRS, ids=lambda v: str(v))
def test_every_pair(state: PaymentState, trigger: Trigger) -> None:
    intent = TranType.AUTH if trigger in _AUTH_TRIGGERS else TranType.SALE
    payment = payment_in(state, tran_type=intent)
    before = Snapshot.of(payment)
    before_visited = payment.visited_states
    target = TRANSITIONS.get((state, trigger))

    try:
        outcome = fire(payment, trigger)
    except InvalidTransition:
        assert target is None, "a legal step was refused"
        assert Snapshot.of(payment) == before
        return

    if target is not None:
        assert outcome.kind is OutcomeKind.APPLIED, outcome.reason
        assert payment.state is target
        assert len(payment.history) == before.history + 1
        entry = payment.history[-1]
        assert (entry.from_state, entry.to_state, entry.trigger) == (state, target, trigger)
        return
    assert outcome.kind is not OutcomeKind.APPLIED, outcome.reason
    # Either the table's verdict, or a check on the result itself that came first: the same
    # transaction already recorded, or a result that cannot be this payment's.
    verdict = decide(state, trigger, visited=before_visited)
    assert outcome.kind in (verdict, OutcomeKind.DUPLICATE, OutcomeKind.QUARANTINED)
    after = Snapshot.of(payment)
    if outcome.kind is OutcomeKind.CONFLICT or outcome.changed:
        # a conflict, or money the payment cannot accept noted for review: one note, one
        # event, nothing else
        assert outcome.kind in (OutcomeKind.CONFLICT, OutcomeKind.QUARANTINED)
        assert payment.has_conflict
        assert after == replace(before, events=before.events + 1)
    else:
        assert after == before
    assert outcome.state is state
