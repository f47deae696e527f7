"""Refunds, on the in-memory ports (on SQL and the simulator: test_lifecycle.py)."""

from __future__ import annotations

import pytest

from paytabs_guard.domain import GatewayStatus, Money, PaymentState
from paytabs_guard.domain.errors import DomainError
from paytabs_guard.service.follow_ups import refund_payment
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayRejected,
)
from paytabs_guard.service.payments import create_payment
from paytabs_guard.service.results import apply_result

from .memory_world import MemoryWorld, order

pytestmark = pytest.mark.anyio


def sar(amount: str) -> Money:
    return Money.of(amount, "SAR")


async def completed(world: MemoryWorld) -> str:
    payment = await create_payment(world.deps, order("100.00"))
    paid, _ = await apply_result(world.deps, world.gateway.pay(payment.cart_id))
    assert paid.state is PaymentState.COMPLETED
    return payment.id


async def test_partial_refunds_add_up_to_a_full_one() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)

    part = await refund_payment(world.deps, payment_id, sar("30.00"))
    assert part.state is PaymentState.PARTIALLY_REFUNDED
    assert part.refunded == sar("30.00")

    rest = await refund_payment(world.deps, payment_id, sar("70.00"))
    assert rest.state is PaymentState.REFUNDED
    assert world.stored(payment_id).refunded == sar("100.00")
    assert world.stored(payment_id).hold is None


async def test_a_refund_beyond_what_was_captured_never_reaches_the_gateway() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    sent_before = sum(len(results) for results in world.gateway.carts.values())

    with pytest.raises(DomainError):
        await refund_payment(world.deps, payment_id, sar("100.01"))

    assert sum(len(results) for results in world.gateway.carts.values()) == sent_before
    assert world.stored(payment_id).state is PaymentState.COMPLETED


@pytest.mark.parametrize(
    "error", [GatewayRejected("Refund not allowed", code=321), GatewayNotReached("open")]
)
async def test_a_refund_the_gateway_did_not_take_releases_its_hold(error: Exception) -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    assert isinstance(error, GatewayRejected | GatewayNotReached)
    world.gateway.fail_next("follow_up", error)

    with pytest.raises(type(error)):
        await refund_payment(world.deps, payment_id, sar("10.00"))

    assert world.stored(payment_id).hold is None
    retried = await refund_payment(world.deps, payment_id, sar("10.00"))
    assert retried.refunded == sar("10.00")


async def test_a_pending_refund_is_reserved_until_the_gateway_settles_it() -> None:
    world = MemoryWorld()
    payment_id = await completed(world)
    world.gateway.follow_up_status = GatewayStatus.PENDING  # some acquirers refund later

    pending = await refund_payment(world.deps, payment_id, sar("60.00"))
    assert pending.refunded == sar("0.00")

    with pytest.raises(DomainError):  # 100 captured, 60 of it already on its way back
        await refund_payment(world.deps, payment_id, sar("60.00"))
    world.gateway.follow_up_status = GatewayStatus.AUTHORIZED
    assert (await refund_payment(world.deps, payment_id, sar("40.00"))).refunded == sar("40.00")
