"""Builders for domain tests: payments in any state, and gateway results that fit them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from paytabs_guard.domain.gateway_results import (
    GatewayResult,
    GatewayStatus,
    ResultSource,
    TranType,
)
from paytabs_guard.domain.money import Money
from paytabs_guard.domain.payment import Outcome, Payment
from paytabs_guard.domain.states import OutcomeKind, PaymentState

T0 = datetime(2025, 1, 29, 9, 0, tzinfo=UTC)
PROFILE = 47170
CART = "cart-0001"
PAGE_REF = "TST2502900000001"
PAGE_TTL = timedelta(minutes=20)


def at(minutes: float) -> datetime:
    """A moment ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def sar(amount: str) -> Money:
    return Money.of(amount, "SAR")


def kwd(amount: str) -> Money:
    return Money.of(amount, "KWD")


def new_payment(
    *,
    tran_type: TranType = TranType.SALE,
    amount: Money | None = None,
    payment_id: str = "pay_1",
) -> Payment:
    """A payment in CREATED."""
    return Payment.create(
        id=payment_id,
        cart_id=CART,
        profile_id=PROFILE,
        amount=amount or sar("100.00"),
        tran_type=tran_type,
        description="Order 1",
        at=T0,
    )


def awaiting(
    *,
    tran_type: TranType = TranType.SALE,
    amount: Money | None = None,
    payment_id: str = "pay_1",
) -> Payment:
    """A payment whose hosted page ``PAGE_REF`` exists."""
    payment = new_payment(tran_type=tran_type, amount=amount, payment_id=payment_id)
    payment.mark_initiating(at=at(0.1))
    payment.page_created(PAGE_REF, at(0.2) + PAGE_TTL, at=at(0.2))
    return payment


def result(
    payment: Payment,
    status: GatewayStatus | None,
    *,
    tran_type: TranType | None = None,
    tran_ref: str = PAGE_REF,
    previous: str | None = None,
    amount: Money | None = None,
    source: ResultSource = ResultSource.CALLBACK,
    profile_id: int = PROFILE,
    cart_id: str = CART,
) -> GatewayResult:
    """A gateway result for ``payment``; by default about its own page transaction."""
    return GatewayResult(
        tran_ref=tran_ref,
        previous_tran_ref=previous,
        cart_id=cart_id,
        profile_id=profile_id,
        tran_type=tran_type or payment.tran_type,
        status=status,
        amount=amount or payment.amount,
        source=source,
        response_code="G12345" if status is GatewayStatus.AUTHORIZED else "",
        response_message="Authorised" if status is GatewayStatus.AUTHORIZED else "",
        transaction_time=None,
    )


def follow_up(
    payment: Payment,
    tran_type: TranType,
    status: GatewayStatus,
    tran_ref: str,
    amount: Money,
    *,
    previous: str | None = None,
) -> GatewayResult:
    """A capture, void, release or refund of ``payment`` (previous = its refund/auth ref)."""
    parent = previous or (
        payment.refund_reference if tran_type is TranType.REFUND else payment.tran_ref
    )
    return result(
        payment, status, tran_type=tran_type, tran_ref=tran_ref, previous=parent, amount=amount
    )


A = GatewayStatus.AUTHORIZED
P = GatewayStatus.PENDING
H = GatewayStatus.ON_HOLD
D = GatewayStatus.DECLINED
E = GatewayStatus.ERROR
X = GatewayStatus.EXPIRED
C = GatewayStatus.CANCELLED
V = GatewayStatus.VOIDED


def applied(outcome: Outcome) -> Outcome:
    """Fail loudly when a setup step did not apply."""
    if outcome.kind is not OutcomeKind.APPLIED:
        raise AssertionError(f"setup step not applied: {outcome}")
    return outcome


def payment_in(state: PaymentState, *, tran_type: TranType = TranType.SALE) -> Payment:
    """A payment brought to ``state`` along a legal path (auth-only states force an auth)."""
    if state in (PaymentState.AUTHORIZED, PaymentState.VOIDED):
        tran_type = TranType.AUTH
    payment = new_payment(tran_type=tran_type)
    match state:
        case PaymentState.CREATED:
            return payment
        case PaymentState.INITIATING:
            applied(payment.mark_initiating(at=at(0.1)))
            return payment
        case PaymentState.UNKNOWN:
            applied(payment.mark_initiating(at=at(0.1)))
            applied(payment.initiation_ambiguous(at=at(0.2)))
            return payment
        case _:
            pass
    payment = awaiting(tran_type=tran_type)
    settle = result(payment, A)
    match state:
        case PaymentState.AWAITING_CUSTOMER:
            pass
        case PaymentState.PENDING:
            applied(payment.apply_gateway_result(result(payment, P), at=at(1)))
        case PaymentState.ON_HOLD:
            applied(payment.apply_gateway_result(result(payment, H), at=at(1)))
        case PaymentState.FAILED:
            applied(payment.apply_gateway_result(result(payment, D), at=at(1)))
        case PaymentState.CANCELLED:
            applied(payment.apply_gateway_result(result(payment, C), at=at(1)))
        case PaymentState.EXPIRED:
            applied(payment.apply_gateway_result(result(payment, X), at=at(1)))
        case PaymentState.AUTHORIZED:
            applied(payment.apply_gateway_result(settle, at=at(1)))
        case PaymentState.VOIDED:
            applied(payment.apply_gateway_result(settle, at=at(1)))
            void = follow_up(payment, TranType.VOID, A, "TSTVOID0001", payment.amount)
            applied(payment.apply_gateway_result(void, at=at(2)))
        case PaymentState.COMPLETED | PaymentState.PARTIALLY_REFUNDED | PaymentState.REFUNDED:
            _complete(payment)
            if state is not PaymentState.COMPLETED:
                quarter = Money(payment.captured.minor_units // 4, payment.amount.currency)
                part = quarter if state is PaymentState.PARTIALLY_REFUNDED else payment.captured
                refund = follow_up(payment, TranType.REFUND, A, "TSTREFUND001", part)
                applied(payment.apply_gateway_result(refund, at=at(3)))
        case _:
            raise AssertionError(f"no path to {state}")
    assert payment.state is state
    return payment


def _complete(payment: Payment) -> None:
    applied(payment.apply_gateway_result(result(payment, A), at=at(1)))
    if payment.tran_type is TranType.AUTH:
        capture = follow_up(payment, TranType.CAPTURE, A, "TSTCAPTURE01", payment.amount)
        applied(payment.apply_gateway_result(capture, at=at(2)))


def state_of(payment: Payment) -> PaymentState:
    """The payment's state read afresh: mypy keeps ``payment.state`` narrowed across calls."""
    return payment.state
