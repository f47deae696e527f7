"""Reconciliation settles follow-ups whose outcome was pending or lost, on the in-memory ports
with an injected clock (on SQL and the simulator, over HTTP:
tests/api/test_follow_up_settlement.py).

Follow-ups are sent without a callback URL, so a refund PayTabs answered ``P``, or whose
answer was lost after PayTabs did it, is only ever learnt by asking. Reconciliation asks (it
never sends a follow-up again) and applies the answer like a direct one: counted once, one
event, the hold released.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from paytabs_guard.domain import GatewayStatus, Money, OutcomeKind, PaymentState, TranType
from paytabs_guard.domain.errors import DomainError, FollowUpInProgress
from paytabs_guard.service.follow_ups import capture_payment, refund_payment
from paytabs_guard.service.gateway import GatewayOutcomeUnknown
from paytabs_guard.service.payments import CreatePayment, create_payment
from paytabs_guard.service.reconciliation import reconcile_once
from paytabs_guard.service.results import apply_result, sync_payment

from .memory_world import MemoryWorld, order

pytestmark = pytest.mark.anyio

STUCK_AFTER = timedelta(minutes=5)


def sar(amount: str) -> Money:
    return Money.of(amount, "SAR")


async def completed(world: MemoryWorld) -> str:
    payment = await create_payment(world.deps, order("100.00"))
    paid, _ = await apply_result(world.deps, world.gateway.pay(payment.cart_id))
    assert paid.state is PaymentState.COMPLETED
    return payment.id


def refund_at_paytabs(world: MemoryWorld, payment_id: str) -> str:
    cart = world.gateway.carts[world.stored(payment_id).cart_id]
    [refund] = [r for r in cart if r.tran_type is TranType.REFUND]
    return refund.tran_ref


async def refund_answer_lost(world: MemoryWorld, payment_id: str, amount: str) -> None:
    """A refund PayTabs did, whose answer never came back (the API's 202)."""
    world.gateway.lose_next_answer(GatewayOutcomeUnknown("read timeout after sending"))
    with pytest.raises(GatewayOutcomeUnknown):
        await refund_payment(world.deps, payment_id, sar(amount))


async def test_a_pending_refund_settled_at_paytabs_is_applied_by_reconciliation() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    world.gateway.follow_up_status = GatewayStatus.PENDING
    await refund_payment(world.deps, payment_id, sar("30.00"))
    world.gateway.settle(refund_at_paytabs(world, payment_id))
    sent = world.gateway.follow_ups_sent()

    early = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert early.examined == 0  # changed a moment ago: not asked about yet

    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    report = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert (report.examined, report.changed) == (1, 1)
    assert report.transitions == [(PaymentState.COMPLETED, PaymentState.PARTIALLY_REFUNDED)]
    payment = world.stored(payment_id)
    assert payment.state is PaymentState.PARTIALLY_REFUNDED
    assert payment.refunded == sar("30.00")
    assert payment.pending_refunds == sar("0.00")
    assert payment.refundable == sar("70.00")
    assert payment.hold is None
    assert world.outbox_types(payment_id).count("payment.refunded") == 1
    assert world.gateway.follow_ups_sent() == sent  # asked, never sent again

    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    again = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert (again.examined, again.changed) == (0, 0)
    assert world.stored(payment_id).version == payment.version


async def test_a_refund_paytabs_still_reports_pending_stays_reserved() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    world.gateway.follow_up_status = GatewayStatus.PENDING
    await refund_payment(world.deps, payment_id, sar("30.00"))
    version = world.stored(payment_id).version

    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    report = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert (report.examined, report.changed) == (1, 0)
    payment = world.stored(payment_id)
    assert payment.version == version
    assert payment.refunded == sar("0.00")
    assert payment.pending_refunds == sar("30.00")
    assert payment.refundable == sar("70.00")
    assert "payment.refunded" not in world.outbox_types(payment_id)


async def test_a_pending_refund_paytabs_declines_is_refundable_again() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    world.gateway.follow_up_status = GatewayStatus.PENDING
    await refund_payment(world.deps, payment_id, sar("30.00"))
    world.gateway.settle(refund_at_paytabs(world, payment_id), GatewayStatus.DECLINED)

    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    payment = world.stored(payment_id)
    assert payment.state is PaymentState.COMPLETED
    assert payment.refunded == sar("0.00")
    assert payment.refundable == sar("100.00")
    assert "payment.refunded" not in world.outbox_types(payment_id)


async def test_a_refund_whose_answer_was_lost_is_settled_once_by_reconciliation() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    await refund_answer_lost(world, payment_id, "30.00")
    held = world.stored(payment_id)
    assert held.hold is not None
    assert held.refunded == sar("0.00")
    sent = world.gateway.follow_ups_sent()

    world.clock.advance(STUCK_AFTER - timedelta(seconds=1))
    early = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert early.examined == 0  # a hold this young may be a request still in flight

    world.clock.advance(timedelta(seconds=2))
    report = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert (report.examined, report.changed) == (1, 1)
    payment = world.stored(payment_id)
    assert payment.state is PaymentState.PARTIALLY_REFUNDED
    assert payment.refunded == sar("30.00")
    assert payment.hold is None
    assert world.outbox_types(payment_id).count("payment.refunded") == 1
    assert world.gateway.follow_ups_sent() == sent

    again = await reconcile_once(world.deps, stuck_after=timedelta(0))
    assert (again.examined, again.changed) == (0, 0)
    # the balance is right: 70 left, and a refund beyond it never reaches PayTabs
    with pytest.raises(DomainError):
        await refund_payment(world.deps, payment_id, sar("70.01"))
    rest = await refund_payment(world.deps, payment_id, sar("70.00"))
    assert rest.state is PaymentState.REFUNDED
    assert rest.refunded == sar("100.00")


async def test_a_late_answer_after_reconciliation_applies_nothing_twice() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    await refund_answer_lost(world, payment_id, "30.00")
    answer = world.gateway.carts[world.stored(payment_id).cart_id][-1]
    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    # another refund is in flight now, and the first one's answer arrives after all
    payment = world.stored(payment_id)
    world.gateway.follow_up_status = GatewayStatus.PENDING
    await refund_payment(world.deps, payment_id, sar("10.00"))
    world.gateway.follow_up_status = GatewayStatus.AUTHORIZED
    await refund_answer_lost(world, payment_id, "20.00")
    assert world.stored(payment_id).hold is not None

    late, outcome = await apply_result(world.deps, answer)

    assert outcome.kind is OutcomeKind.DUPLICATE
    assert late.refunded == sar("30.00")
    assert late.hold is not None  # the 20.00 refund's hold: its answer is still unknown
    assert world.outbox_types(payment_id).count("payment.refunded") == 1
    with pytest.raises(FollowUpInProgress):
        await refund_payment(world.deps, payment_id, sar("5.00"))
    assert payment.refunded == sar("30.00")


async def test_two_reconcilers_at_once_apply_a_lost_refund_once() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    await refund_answer_lost(world, payment_id, "30.00")
    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))

    await asyncio.gather(
        reconcile_once(world.deps, stuck_after=STUCK_AFTER),
        reconcile_once(world.deps, stuck_after=STUCK_AFTER),
        sync_payment(world.deps, payment_id),  # the /process endpoint, at the same moment
    )

    payment = world.stored(payment_id)
    assert payment.refunded == sar("30.00")
    assert payment.hold is None
    assert [t.to_state for t in payment.history].count(PaymentState.PARTIALLY_REFUNDED) == 1
    assert world.outbox_types(payment_id).count("payment.refunded") == 1


async def test_a_lost_refund_paytabs_never_did_keeps_its_hold_while_it_may_still_land() -> None:
    """The hold stays while the refund's request may still reach PayTabs (the send window:
    the last retry starts by the deadline and runs to its timeout); after that, PayTabs'
    silence is the answer. It waited 15 minutes, in which /process said "confirmed, nothing
    refunded" while every new refund was refused as waiting for PayTabs."""
    world = MemoryWorld()
    payment_id = await completed(world)
    world.gateway.fail_next("follow_up", GatewayOutcomeUnknown("reset after sending"))
    with pytest.raises(GatewayOutcomeUnknown):  # and PayTabs never saw it
        await refund_payment(world.deps, payment_id, sar("30.00"))
    sent = world.gateway.follow_ups_sent()

    world.clock.advance(world.deps.send_window - timedelta(seconds=1))
    await sync_payment(world.deps, payment_id)  # /process asks PayTabs: nothing yet
    assert world.stored(payment_id).hold is not None  # it may still land: keep the turn

    world.clock.advance(STUCK_AFTER)
    lapsed = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert (lapsed.examined, lapsed.changed) == (1, 1)
    payment = world.stored(payment_id)
    assert payment.hold is None
    assert payment.refunded == sar("0.00")
    assert payment.state is PaymentState.COMPLETED
    assert "payment.refunded" not in world.outbox_types(payment_id)
    assert world.gateway.follow_ups_sent() == sent  # never re-sent by reconciliation
    assert (await reconcile_once(world.deps, stuck_after=STUCK_AFTER)).examined == 0
    # and the merchant's next refund goes out
    again = await refund_payment(world.deps, payment_id, sar("30.00"))
    assert again.refunded == sar("30.00")


async def test_a_capture_whose_answer_was_lost_completes_the_payment() -> None:
    world = MemoryWorld()
    created = await create_payment(
        world.deps, CreatePayment(amount=sar("100.00"), description="x", tran_type=TranType.AUTH)
    )
    await apply_result(world.deps, world.gateway.pay(created.cart_id))
    world.gateway.lose_next_answer(GatewayOutcomeUnknown("read timeout after sending"))
    with pytest.raises(GatewayOutcomeUnknown):
        await capture_payment(world.deps, created.id, None)
    assert world.stored(created.id).state is PaymentState.AUTHORIZED

    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    report = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert report.transitions == [(PaymentState.AUTHORIZED, PaymentState.COMPLETED)]
    payment = world.stored(created.id)
    assert payment.captured == sar("100.00")
    assert payment.hold is None
    assert world.outbox_types(created.id).count("payment.captured") == 1


async def test_an_unknown_refund_listed_with_the_answer_counts_too() -> None:
    # Two refunds of the same sale that the payment does not know: the held one, and one made
    # elsewhere (PayTabs' dashboard). Both are money that went back.
    world = MemoryWorld()
    payment_id = await completed(world)
    await refund_answer_lost(world, payment_id, "30.00")
    cart = world.gateway.carts[world.stored(payment_id).cart_id]
    cart.append(replace(cart[-1], tran_ref="TST2999999999999", amount=sar("5.00")))

    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    await reconcile_once(world.deps, stuck_after=STUCK_AFTER)

    payment = world.stored(payment_id)
    assert payment.refunded == sar("35.00")
    assert payment.hold is None
    assert world.outbox_types(payment_id).count("payment.refunded") == 2


async def test_a_callback_that_lands_during_a_pass_is_not_reported_as_the_pass_s_transition() -> (
    None
):
    # The pass reads the payment, asks PayTabs, and the callback settles it in between: the
    # transition is the callback's. Reported as reconciliation's, it fed the alert that says
    # callbacks are being lost.
    world = MemoryWorld()
    created = await create_payment(world.deps, CreatePayment(amount=sar("10.00"), description="x"))
    paid = world.gateway.pay(created.cart_id)
    asked = world.gateway.transactions

    async def callback_first(cart_id: str) -> list[object]:
        await apply_result(world.deps, paid, dedupe_key="callback-1")
        return list(await asked(cart_id))

    world.gateway.transactions = callback_first  # type: ignore[assignment,method-assign]
    world.clock.advance(STUCK_AFTER + timedelta(seconds=1))
    report = await reconcile_once(world.deps, stuck_after=STUCK_AFTER)
    assert report.examined == 1
    assert report.transitions == []
    assert world.stored(created.id).state is PaymentState.COMPLETED
    assert world.outbox_types(created.id).count("payment.completed") == 1
