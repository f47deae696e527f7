"""Captures, voids, refunds and the pending-APM flow, and the guards on our own requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from domain_builders import (
    PAGE_REF,
    A,
    D,
    H,
    P,
    V,
    X,
    applied,
    at,
    awaiting,
    follow_up,
    kwd,
    payment_in,
    result,
    sar,
    state_of,
)

from paytabs_guard.domain.errors import (
    AmountExceedsAvailable,
    CaptureExceedsAuthorized,
    CaptureNotAllowed,
    CurrencyMismatch,
    FollowUpInProgress,
    InvalidPaymentRequest,
    PaymentNotVoidable,
    RefundExceedsCaptured,
    RefundNotAllowed,
)
from paytabs_guard.domain.events import ExpiryCause, PaymentExpired, PaymentRefunded
from paytabs_guard.domain.gateway_results import GatewayStatus, TranType
from paytabs_guard.domain.money import Money
from paytabs_guard.domain.payment import Payment
from paytabs_guard.domain.states import OutcomeKind, PaymentState

S = PaymentState


def authorized(amount: Money | None = None) -> Payment:
    payment = awaiting(tran_type=TranType.AUTH, amount=amount)
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    return payment


def completed(amount: Money | None = None) -> Payment:
    payment = awaiting(amount=amount)
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    return payment


def refund(payment: Payment, ref: str, amount: Money, status: GatewayStatus = A) -> OutcomeKind:
    outcome = payment.apply_gateway_result(
        follow_up(payment, TranType.REFUND, status, ref, amount),
        at=at(5),
    )
    return outcome.kind


# ---- capture, void, release ------------------------------------------------------------------


def test_a_capture_completes_an_authorisation() -> None:
    payment = authorized()
    capture = follow_up(payment, TranType.CAPTURE, A, "CAP1", payment.amount)
    outcome = payment.apply_gateway_result(capture, at=at(2))
    assert payment.state is S.COMPLETED
    assert payment.captured == payment.amount
    assert [event.type for event in outcome.events] == ["payment.captured", "payment.completed"]
    assert payment.refund_reference == "CAP1"
    assert payment.history[-1].gateway_ref == "CAP1"


def test_a_partial_capture_in_kwd_caps_what_can_be_refunded() -> None:
    payment = authorized(kwd("10.000"))
    payment.ensure_can_capture(kwd("7.125"))
    capture = follow_up(payment, TranType.CAPTURE, A, "CAP1", kwd("7.125"))
    applied(payment.apply_gateway_result(capture, at=at(2)))
    assert payment.captured == kwd("7.125")
    assert payment.refundable == kwd("7.125")
    with pytest.raises(RefundExceedsCaptured):
        payment.ensure_can_refund(kwd("7.126"))


def test_the_same_capture_twice_is_a_duplicate() -> None:
    payment = authorized()
    capture = follow_up(payment, TranType.CAPTURE, A, "CAP1", payment.amount)
    applied(payment.apply_gateway_result(capture, at=at(2)))
    assert payment.apply_gateway_result(capture, at=at(3)).kind is OutcomeKind.DUPLICATE
    assert [e.type for e in payment.pending_events].count("payment.completed") == 1


def test_a_second_capture_is_quarantined() -> None:
    payment = authorized()
    first = follow_up(payment, TranType.CAPTURE, A, "CAP1", sar("50.00"))
    applied(payment.apply_gateway_result(first, at=at(2)))
    second = follow_up(payment, TranType.CAPTURE, A, "CAP2", sar("50.00"))
    outcome = payment.apply_gateway_result(second, at=at(3))
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert payment.captured == sar("50.00")


def test_a_declined_capture_is_recorded_and_the_authorisation_stays() -> None:
    payment = authorized()
    declined = follow_up(payment, TranType.CAPTURE, D, "CAP1", payment.amount)
    outcome = payment.apply_gateway_result(declined, at=at(2))
    assert (outcome.kind, outcome.events) == (OutcomeKind.APPLIED, ())
    assert payment.state is S.AUTHORIZED
    assert payment.transactions[-1].tran_ref == "CAP1"
    payment.ensure_can_capture(payment.amount)  # a new capture may be tried
    retry = follow_up(payment, TranType.CAPTURE, A, "CAP2", payment.amount)
    applied(payment.apply_gateway_result(retry, at=at(3)))


@pytest.mark.parametrize(
    ("tran_type", "status"), [(TranType.VOID, A), (TranType.VOID, V), (TranType.RELEASE, A)]
)
def test_void_or_release_voids_an_authorisation(tran_type: TranType, status: GatewayStatus) -> None:
    payment = authorized()
    void = follow_up(payment, tran_type, status, "VOID1", payment.amount)
    outcome = payment.apply_gateway_result(void, at=at(2))
    assert payment.state is S.VOIDED
    assert [event.type for event in outcome.events] == ["payment.voided"]


def test_the_authorisation_itself_reported_voided_voids_it() -> None:
    payment = authorized()
    applied(payment.apply_gateway_result(result(payment, V), at=at(2)))
    assert payment.state is S.VOIDED
    late_void = follow_up(payment, TranType.VOID, A, "VOID1", payment.amount)
    assert payment.apply_gateway_result(late_void, at=at(3)).kind is OutcomeKind.DUPLICATE


def test_an_expired_authorisation_expires_with_its_cause() -> None:
    payment = authorized()
    outcome = payment.apply_gateway_result(result(payment, X), at=at(60 * 24 * 7))
    (event,) = outcome.events
    assert isinstance(event, PaymentExpired)
    assert event.cause is ExpiryCause.AUTHORIZATION_EXPIRED


def test_a_void_before_the_authorisation_is_illegal_until_redelivered() -> None:
    payment = awaiting(tran_type=TranType.AUTH)
    void = follow_up(payment, TranType.VOID, A, "VOID1", payment.amount)
    assert payment.apply_gateway_result(void, at=at(1)).kind is OutcomeKind.ILLEGAL
    applied(payment.apply_gateway_result(result(payment, A), at=at(2)))
    applied(payment.apply_gateway_result(void, at=at(3)))
    assert payment.state is S.VOIDED


# ---- refunds ----------------------------------------------------------------------------------


def test_partial_refunds_add_up_to_a_full_refund_in_kwd() -> None:
    payment = completed(kwd("10.000"))
    assert refund(payment, "R1", kwd("3.333")) is OutcomeKind.APPLIED
    assert payment.state is S.PARTIALLY_REFUNDED
    assert refund(payment, "R2", kwd("3.333")) is OutcomeKind.APPLIED
    assert payment.state is S.PARTIALLY_REFUNDED
    assert payment.refundable == kwd("3.334")
    payment.ensure_can_refund(kwd("3.334"))
    with pytest.raises(RefundExceedsCaptured) as raised:
        payment.ensure_can_refund(kwd("3.335"))
    assert raised.value.available == kwd("3.334")
    assert "at most 3.334 KWD" in str(raised.value)
    assert refund(payment, "R3", kwd("3.334")) is OutcomeKind.APPLIED
    assert state_of(payment) is S.REFUNDED
    assert payment.refunded == kwd("10.000")
    refunds = [e for e in payment.pending_events if isinstance(e, PaymentRefunded)]
    assert [r.fully_refunded for r in refunds] == [False, False, True]
    assert refunds[-1].data["refunded_total"] == "10.000"


def test_one_full_refund_refunds() -> None:
    payment = completed()
    assert refund(payment, "R1", payment.amount) is OutcomeKind.APPLIED
    assert payment.state is S.REFUNDED
    with pytest.raises(RefundNotAllowed):
        payment.ensure_can_refund(sar("0.01"))


def test_a_refund_reported_again_after_it_was_counted_is_a_duplicate_not_over_the_limit() -> None:
    # Follow-ups carry the callback URL: PayTabs reports a refund after its direct answer was
    # applied. Held against what is left (the refund itself already taken off), every refund
    # of more than half of it was quarantined as a security event.
    payment = completed()
    assert refund(payment, "R1", sar("60.00")) is OutcomeKind.APPLIED
    assert refund(payment, "R1", sar("60.00")) is OutcomeKind.DUPLICATE
    assert refund(payment, "R2", sar("40.00")) is OutcomeKind.APPLIED
    assert refund(payment, "R2", sar("40.00")) is OutcomeKind.DUPLICATE
    assert payment.state is S.REFUNDED
    assert payment.refunded == sar("100.00")
    # the same tran_ref for another amount is not a repeat: it is still checked
    assert refund(payment, "R2", sar("45.00")) is OutcomeKind.QUARANTINED


def test_an_earlier_refund_reported_late_does_not_release_the_hold_of_the_one_in_flight() -> None:
    # R1's hold was given up (PayTabs held nothing when asked); R2 is in flight when R1's
    # callback arrives after all. R1 is money that went back, but not R2's answer.
    payment = completed()
    parent = payment.refund_reference
    assert parent is not None
    payment.hold_follow_up(TranType.REFUND, sar("30.00"), parent, at=at(2))
    assert payment.release_lapsed_hold(at=at(20), after=timedelta(minutes=15))
    payment.hold_follow_up(TranType.REFUND, sar("50.00"), parent, at=at(21))
    late = follow_up(payment, TranType.REFUND, A, "TST-R1", sar("30.00"))
    assert payment.settles_follow_up(late)  # news: applied by reconciliation
    assert not payment.answers_hold(late)  # but R2's hold stays
    answer = follow_up(payment, TranType.REFUND, A, "TST-R2", sar("50.00"))
    assert payment.answers_hold(answer)


def test_a_refund_beyond_what_is_left_is_quarantined() -> None:
    payment = completed()
    applied_kind = refund(payment, "R1", sar("60.00"))
    assert applied_kind is OutcomeKind.APPLIED
    assert refund(payment, "R2", sar("40.01")) is OutcomeKind.QUARANTINED
    assert payment.refunded == sar("60.00")


def test_a_pending_refund_is_recorded_and_reserves_its_amount() -> None:
    payment = completed()
    assert refund(payment, "R1", sar("40.00"), P) is OutcomeKind.APPLIED
    assert payment.state is S.COMPLETED
    assert payment.pending_refunds == sar("40.00")
    assert payment.refundable == sar("60.00")
    with pytest.raises(RefundExceedsCaptured):
        payment.ensure_can_refund(sar("60.01"))
    assert refund(payment, "R1", sar("40.00"), P) is OutcomeKind.DUPLICATE
    assert refund(payment, "R1", sar("40.00"), H) is OutcomeKind.DUPLICATE
    assert refund(payment, "R1", sar("40.00"), A) is OutcomeKind.APPLIED
    assert state_of(payment) is S.PARTIALLY_REFUNDED
    assert payment.pending_refunds == sar("0.00")
    assert payment.refundable == sar("60.00")
    assert refund(payment, "R1", sar("40.00"), P) is OutcomeKind.STALE


def test_a_pending_refund_that_fails_releases_its_amount() -> None:
    payment = completed()
    refund(payment, "R1", sar("40.00"), P)
    assert refund(payment, "R1", sar("40.00"), D) is OutcomeKind.APPLIED
    assert payment.pending_refunds == sar("0.00")
    assert payment.refundable == payment.amount
    assert payment.state is S.COMPLETED


def test_a_refund_that_succeeded_then_is_reported_declined_is_a_conflict() -> None:
    payment = completed()
    refund(payment, "R1", sar("40.00"))
    assert refund(payment, "R1", sar("40.00"), D) is OutcomeKind.CONFLICT
    assert payment.refunded == sar("40.00")
    assert payment.has_conflict


def test_a_refund_before_the_sale_is_illegal_until_redelivered() -> None:
    payment = awaiting()
    early = follow_up(payment, TranType.REFUND, A, "R1", sar("10.00"), previous=PAGE_REF)
    assert payment.apply_gateway_result(early, at=at(1)).kind is OutcomeKind.ILLEGAL
    pending = follow_up(payment, TranType.REFUND, P, "R1", sar("10.00"), previous=PAGE_REF)
    assert payment.apply_gateway_result(pending, at=at(1)).kind is OutcomeKind.ILLEGAL
    applied(payment.apply_gateway_result(result(payment, A), at=at(2)))
    applied(payment.apply_gateway_result(early, at=at(3)))
    assert payment.state is S.PARTIALLY_REFUNDED


# ---- pending APM (payment request) ---------------------------------------------------------------


def test_a_payment_request_completes_through_its_new_sale() -> None:
    payment = awaiting()
    request = result(payment, P, tran_type=TranType.PAYMENT_REQUEST)
    applied(payment.apply_gateway_result(request, at=at(1)))
    assert payment.state is S.PENDING
    sale = result(payment, A, tran_type=TranType.SALE, tran_ref="TSTSALE2", previous=PAGE_REF)
    outcome = payment.apply_gateway_result(sale, at=at(90))
    assert state_of(payment) is S.COMPLETED
    assert [event.type for event in outcome.events] == ["payment.completed"]
    assert outcome.events[0].data["tran_ref"] == "TSTSALE2"
    assert payment.refund_reference == "TSTSALE2"
    # A refund of the new sale is this payment's; a second sale would charge twice.
    assert refund(payment, "R1", sar("10.00")) is OutcomeKind.APPLIED
    again = result(payment, A, tran_type=TranType.SALE, tran_ref="TSTSALE3", previous=PAGE_REF)
    assert payment.apply_gateway_result(again, at=at(91)).kind is OutcomeKind.QUARANTINED


def test_an_unpaid_payment_request_expires() -> None:
    payment = awaiting()
    request = result(payment, P, tran_type=TranType.PAYMENT_REQUEST)
    applied(payment.apply_gateway_result(request, at=at(1)))
    outcome = payment.apply_gateway_result(
        result(payment, X, tran_type=TranType.PAYMENT_REQUEST), at=at(180)
    )
    assert payment.state is S.EXPIRED
    (event,) = outcome.events
    assert isinstance(event, PaymentExpired)
    assert event.cause is ExpiryCause.GATEWAY_EXPIRED


# ---- guards --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [s for s in PaymentState if s not in (S.COMPLETED, S.PARTIALLY_REFUNDED)],
)
def test_refunds_are_refused_unless_money_moved(state: PaymentState) -> None:
    with pytest.raises(RefundNotAllowed, match="only completed"):
        payment_in(state).ensure_can_refund(sar("1.00"))


def test_refund_amounts_must_be_positive_and_in_the_payments_currency() -> None:
    payment = completed()
    with pytest.raises(CurrencyMismatch, match="send the amount in SAR"):
        payment.ensure_can_refund(Money.of("1.00", "AED"))
    with pytest.raises(InvalidPaymentRequest, match="more than zero"):
        payment.ensure_can_refund(sar("0.00"))


@pytest.mark.parametrize("state", [s for s in PaymentState if s is not S.AUTHORIZED])
def test_captures_need_an_authorisation(state: PaymentState) -> None:
    with pytest.raises(CaptureNotAllowed):
        payment_in(state, tran_type=TranType.AUTH).ensure_can_capture(sar("1.00"))


def test_captures_stay_within_the_authorised_amount() -> None:
    payment = authorized(kwd("5.500"))
    payment.ensure_can_capture(kwd("5.500"))
    with pytest.raises(CaptureExceedsAuthorized) as raised:
        payment.ensure_can_capture(kwd("5.501"))
    assert isinstance(raised.value, AmountExceedsAvailable)


def test_no_second_capture_while_paytabs_reports_one_pending() -> None:
    # One capture per payment: a second one sent now would be quarantined when it succeeds.
    payment = authorized(kwd("5.500"))
    pending = follow_up(payment, TranType.CAPTURE, P, "CAP1", kwd("2.000"))
    applied(payment.apply_gateway_result(pending, at=at(2)))
    assert payment.pending_captures == kwd("2.000")
    with pytest.raises(FollowUpInProgress, match="a capture sent at"):
        payment.ensure_can_capture(kwd("3.500"))
    declined = follow_up(payment, TranType.CAPTURE, D, "CAP1", kwd("2.000"))
    applied(payment.apply_gateway_result(declined, at=at(3)))
    payment.ensure_can_capture(kwd("5.500"))  # declined: a capture may be tried again


def test_voids_need_an_authorisation_with_nothing_captured() -> None:
    authorized().ensure_can_void()
    with pytest.raises(PaymentNotVoidable, match="only an authorized"):
        completed().ensure_can_void()
    payment = authorized()
    captured = follow_up(payment, TranType.CAPTURE, A, "CAP1", sar("40.00"))
    applied(payment.apply_gateway_result(captured, at=at(2)))
    assert payment.state is S.COMPLETED  # its one capture: the rest of the hold is released
    with pytest.raises(PaymentNotVoidable, match="only an authorized"):
        payment.ensure_can_void()


def test_a_void_waits_for_a_pending_capture_then_may_go() -> None:
    # A refusal of the moment (its key freed), not "refund instead": the capture may be declined.
    payment = authorized()
    pending = follow_up(payment, TranType.CAPTURE, P, "CAP1", payment.amount)
    applied(payment.apply_gateway_result(pending, at=at(2)))
    with pytest.raises(FollowUpInProgress, match="a capture sent at"):
        payment.ensure_can_void()
    declined = follow_up(payment, TranType.CAPTURE, D, "CAP1", payment.amount)
    applied(payment.apply_gateway_result(declined, at=at(3)))
    payment.ensure_can_void()


@pytest.mark.parametrize("ending", [TranType.VOID, TranType.RELEASE])
def test_nothing_ends_an_authorisation_while_a_void_or_release_is_pending(
    ending: TranType,
) -> None:
    payment = authorized()
    pending = follow_up(payment, ending, P, "END1", payment.amount)
    applied(payment.apply_gateway_result(pending, at=at(2)))
    assert payment.state is S.AUTHORIZED
    with pytest.raises(FollowUpInProgress, match=f"a {ending.value} sent at"):
        payment.ensure_can_capture(sar("10.00"))
    with pytest.raises(FollowUpInProgress):
        payment.ensure_can_void()
    declined = follow_up(payment, ending, D, "END1", payment.amount)
    applied(payment.apply_gateway_result(declined, at=at(3)))
    payment.ensure_can_capture(sar("10.00"))


# ---- second guards: what screening refuses, one rule at a time ---------------------------------


@pytest.mark.parametrize("tran_type", [TranType.CAPTURE, TranType.VOID, TranType.RELEASE])
def test_a_follow_up_for_more_than_the_payment_is_quarantined(tran_type: TranType) -> None:
    payment = authorized()
    over = follow_up(payment, tran_type, A, "F1", sar("100.01"))
    outcome = payment.apply_gateway_result(over, at=at(2))
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert "does not fit a payment of" in (outcome.reason or "")
    assert payment.state is S.AUTHORIZED
    assert payment.captured == sar("0.00")


def test_a_follow_up_for_nothing_is_quarantined() -> None:
    payment = authorized()
    outcome = payment.apply_gateway_result(
        follow_up(payment, TranType.CAPTURE, A, "F0", sar("0.00")), at=at(2)
    )
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert payment.state is S.AUTHORIZED


def test_a_result_in_another_currency_is_quarantined_for_its_currency() -> None:
    # Same minor units, another currency: the reason must be the currency, whatever else holds.
    payment = completed()
    for candidate in (
        result(payment, A, amount=Money(payment.amount.minor_units, "AED")),
        follow_up(payment, TranType.REFUND, A, "R1", Money(1000, "AED")),
    ):
        outcome = payment.apply_gateway_result(candidate, at=at(3))
        assert outcome.kind is OutcomeKind.QUARANTINED
        assert (outcome.reason or "").startswith("currency AED is not this payment's SAR")
    assert payment.state is S.COMPLETED
    assert payment.refunded == sar("0.00")


def test_a_refund_result_beyond_what_is_left_after_earlier_refunds_is_quarantined() -> None:
    payment = completed()
    assert refund(payment, "R1", sar("30.00")) is OutcomeKind.APPLIED
    assert refund(payment, "R2", sar("30.00")) is OutcomeKind.APPLIED
    outcome = payment.apply_gateway_result(
        follow_up(payment, TranType.REFUND, A, "R3", sar("40.01")), at=at(6)
    )
    assert outcome.kind is OutcomeKind.QUARANTINED
    assert "exceeds the 40.00 SAR refundable" in (outcome.reason or "")
    assert refund(payment, "R4", sar("40.00")) is OutcomeKind.APPLIED
    assert payment.state is S.REFUNDED


# ---- unsettled follow-ups: what reconciliation asks PayTabs about ---------------------------


def awaits(payment: Payment) -> bool:
    # read through a call: mypy would otherwise keep the narrowing of the previous assert
    return payment.awaits_follow_up


def held_refund(payment: Payment, amount: Money, *, minutes: float = 2) -> None:
    parent = payment.refund_reference
    assert parent is not None
    payment.hold_follow_up(TranType.REFUND, amount, parent, at=at(minutes))


def test_a_held_or_pending_follow_up_awaits_paytabs_and_an_answered_one_does_not() -> None:
    payment = completed(sar("100.00"))
    assert not awaits(payment)
    held_refund(payment, sar("30.00"))
    assert awaits(payment)  # sent, answer not applied: only PayTabs knows
    answer = follow_up(payment, TranType.REFUND, P, "TST2500000000101", sar("30.00"))
    assert payment.answers_hold(answer)
    applied(payment.apply_gateway_result(answer, at=at(3)))
    payment.release_follow_up()
    assert awaits(payment)  # pending at PayTabs
    settled = follow_up(payment, TranType.REFUND, A, "TST2500000000101", sar("30.00"))
    assert payment.settles_follow_up(settled)
    applied(payment.apply_gateway_result(settled, at=at(9)))
    assert not awaits(payment)
    assert payment.refunded == sar("30.00")


def test_only_a_transaction_the_payment_did_not_know_answers_its_hold() -> None:
    payment = completed(sar("100.00"))
    first = follow_up(payment, TranType.REFUND, A, "TST2500000000101", sar("30.00"))
    applied(payment.apply_gateway_result(first, at=at(2)))
    held_refund(payment, sar("20.00"), minutes=3)

    assert not payment.answers_hold(first)  # a late repeat of the earlier refund's answer
    assert not payment.settles_follow_up(first)
    assert not payment.settles_follow_up(result(payment, A))  # the sale itself: old news
    capture = follow_up(payment, TranType.CAPTURE, A, "TST2500000000102", sar("20.00"))
    assert not payment.answers_hold(capture)  # not the hold's kind
    second = follow_up(payment, TranType.REFUND, A, "TST2500000000103", sar("20.00"))
    assert payment.answers_hold(second)
    assert payment.settles_follow_up(second)


def test_a_release_answers_a_held_void() -> None:
    payment = authorized(sar("100.00"))
    assert payment.tran_ref is not None
    payment.hold_follow_up(TranType.VOID, sar("100.00"), payment.tran_ref, at=at(2))
    release = follow_up(payment, TranType.RELEASE, A, "TST2500000000104", sar("100.00"))
    assert payment.answers_hold(release)


def test_a_hold_is_dropped_only_once_it_lapsed() -> None:
    payment = completed(sar("100.00"))
    held_refund(payment, sar("30.00"), minutes=2)
    lapse = timedelta(minutes=15)
    assert not payment.release_lapsed_hold(at=at(16.9), after=lapse)
    assert awaits(payment)
    assert payment.release_lapsed_hold(at=at(17), after=lapse)
    assert not awaits(payment)
    assert not payment.release_lapsed_hold(at=at(30), after=lapse)
