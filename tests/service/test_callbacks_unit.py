"""Applying what PayTabs reports (callbacks, queries), on the in-memory ports.

The same paths on SQL and the simulator: test_lifecycle.py and tests/api/test_webhook_*.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from paytabs_guard.domain import Money, OutcomeKind, Payment, PaymentState
from paytabs_guard.service.payments import UnknownGatewayTransaction, create_payment
from paytabs_guard.service.results import apply_result, sync_payment

from .memory_world import MemoryWorld, order

pytestmark = pytest.mark.anyio


async def opened(world: MemoryWorld) -> Payment:
    payment = await create_payment(world.deps, order())
    assert payment.state is PaymentState.AWAITING_CUSTOMER
    return payment


async def test_a_paid_callback_completes_the_payment_and_emits_once() -> None:
    world = MemoryWorld()
    payment = await opened(world)
    callback = world.gateway.pay(payment.cart_id)

    applied, outcome = await apply_result(world.deps, callback, dedupe_key="delivery-1")
    repeat, again = await apply_result(world.deps, callback, dedupe_key="delivery-1")

    assert outcome.kind is OutcomeKind.APPLIED
    assert applied.state is PaymentState.COMPLETED
    assert again.kind is OutcomeKind.DUPLICATE
    assert world.stored(payment.id).state is PaymentState.COMPLETED
    assert world.outbox_types(payment.id).count("payment.completed") == 1
    assert repeat.version == applied.version  # the duplicate wrote nothing


async def test_a_result_for_no_known_cart_is_refused_and_not_remembered() -> None:
    world = MemoryWorld()
    payment = await opened(world)
    stranger = dataclasses.replace(
        world.gateway.pay(payment.cart_id), cart_id="cart-of-someone-else", tran_ref="TST2999"
    )

    with pytest.raises(UnknownGatewayTransaction):
        await apply_result(world.deps, stranger, dedupe_key="delivery-9")

    assert world.store.inbox == {}  # PayTabs' retry must not be taken for a duplicate


async def test_a_quarantined_result_does_not_make_the_genuine_one_a_duplicate() -> None:
    world = MemoryWorld()
    payment = await opened(world)
    genuine = world.gateway.pay(payment.cart_id)
    tampered = dataclasses.replace(genuine, amount=Money.of("1.00", "SAR"))

    _, first = await apply_result(world.deps, tampered, dedupe_key="d-1", exact_key="bytes-1")
    paid, second = await apply_result(world.deps, genuine, dedupe_key="d-1")

    assert first.kind is OutcomeKind.QUARANTINED
    assert second.kind is OutcomeKind.APPLIED
    assert paid.state is PaymentState.COMPLETED


async def test_sync_applies_what_a_lost_callback_would_have_said() -> None:
    world = MemoryWorld()
    payment = await opened(world)
    world.gateway.pay(payment.cart_id)  # the callback never arrives

    synced = await sync_payment(world.deps, payment.id)

    assert synced.state is PaymentState.COMPLETED
    assert world.stored(payment.id).state is PaymentState.COMPLETED


async def test_sync_expires_a_page_nobody_paid_only_after_its_deadline() -> None:
    world = MemoryWorld()
    payment = await opened(world)

    world.clock.advance(timedelta(minutes=19))
    assert (await sync_payment(world.deps, payment.id)).state is PaymentState.AWAITING_CUSTOMER
    world.clock.advance(timedelta(minutes=1))
    assert (await sync_payment(world.deps, payment.id)).state is PaymentState.EXPIRED
    assert world.outbox_types(payment.id)[-1] == "payment.expired"
