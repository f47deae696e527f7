"""Follow-ups of a payment (capture, void, release, refund): checked and held under the row
lock, sent without it, answered through ``apply_result`` like every other gateway result."""

from __future__ import annotations

from collections.abc import Callable

from paytabs_guard.domain import FollowUpType, Money, Outcome, Payment, TranType
from paytabs_guard.domain.follow_ups import HOLD_STALE_AFTER
from paytabs_guard.service.gateway import GatewayNotReached, GatewayRejected
from paytabs_guard.service.payment_steps import (
    PaymentDeps,
    change_payment,
    load_payment,
)
from paytabs_guard.service.results import apply_result

#: Told the outcome of the gateway's answer once it is stored (the caller's metrics).
OnOutcome = Callable[[Outcome], object] | None


async def refund_payment(
    deps: PaymentDeps, payment_id: str, amount: Money, *, on_outcome: OnOutcome = None
) -> Payment:
    """Refund part or all of what was captured; never beyond it (checked under the row lock
    and again by PayTabs)."""

    def check(payment: Payment) -> str | None:
        payment.ensure_can_refund(amount)
        return payment.refund_reference

    return await _follow_up(deps, payment_id, FollowUpType.REFUND, amount, check, on_outcome)


async def capture_payment(
    deps: PaymentDeps, payment_id: str, amount: Money | None, *, on_outcome: OnOutcome = None
) -> Payment:
    def check(payment: Payment) -> str | None:
        payment.ensure_can_capture(amount or payment.amount)
        return payment.tran_ref

    return await _follow_up(deps, payment_id, FollowUpType.CAPTURE, amount, check, on_outcome)


async def void_payment(
    deps: PaymentDeps, payment_id: str, *, on_outcome: OnOutcome = None
) -> Payment:
    def check(payment: Payment) -> str | None:
        payment.ensure_can_void()
        return payment.tran_ref

    return await _follow_up(deps, payment_id, FollowUpType.VOID, None, check, on_outcome)


async def release_payment(
    deps: PaymentDeps, payment_id: str, *, on_outcome: OnOutcome = None
) -> Payment:
    """PayTabs' ``release`` of an authorisation: the same rules and outcome as a void (the
    hold ends, the payment becomes voided); some acquirers only accept one or the other."""

    def check(payment: Payment) -> str | None:
        payment.ensure_can_void()
        return payment.tran_ref

    return await _follow_up(deps, payment_id, FollowUpType.RELEASE, None, check, on_outcome)


async def _follow_up(
    deps: PaymentDeps,
    payment_id: str,
    kind: FollowUpType,
    amount: Money | None,
    check: Callable[[Payment], str | None],
    on_outcome: OnOutcome = None,
) -> Payment:
    """Check and hold under the row lock, send without a lock, apply the answer and release.

    The hold makes follow-ups of one payment take turns, so two concurrent refunds can never
    both pass the amount check. When the answer is lost the hold stays: reconciliation asks
    PayTabs what it did and applies that through ``apply_result`` (``settle_follow_ups``),
    which releases it; a hold PayTabs, asked, has no answer for is dropped once its request
    can no longer land (``results._release_if_lapsed``), and any goes stale after 15 minutes
    (or the send window, when that is longer).
    """
    async with deps.uow() as uow:
        payment = await load_payment(uow, payment_id, for_update=True)
        parent = check(payment)  # raises a DomainError that says what is not allowed
        if parent is None:
            raise GatewayRejected(f"payment {payment_id} has no transaction to {kind.value}")
        hold = payment.hold_follow_up(
            TranType(kind.value),
            amount or payment.amount,
            parent,
            at=deps.clock(),
            # A hold still on its way to PayTabs is never taken over: with a long operation
            # deadline, a request is retried past the usual 15 minutes.
            stale_after=max(HOLD_STALE_AFTER, deps.send_window),
        )
        known = [t.tran_ref for t in payment.transactions]
        await uow.commit()
    try:
        result = await deps.gateway.follow_up(
            payment,
            kind,
            hold.amount,
            parent_tran_ref=parent,
            known_tran_refs=known,
            sequence=hold.sequence,
        )
    except (GatewayRejected, GatewayNotReached):
        await change_payment(deps, payment_id, lambda p, _at: p.release_follow_up())
        raise
    payment, _ = await apply_result(deps, result, on_outcome=on_outcome)
    return payment
