"""Applying what PayTabs reports (callbacks, queries), on the in-memory ports.

The same paths on SQL and the simulator: test_lifecycle.py and tests/api/test_webhook_*.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from paytabs_guard.domain import Money, Outcome, OutcomeKind, Payment, PaymentState, ResultSource
from paytabs_guard.service.payments import UnknownGatewayTransaction, create_payment
from paytabs_guard.service.ports import UnitOfWork
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


async def test_a_callback_overtaken_between_its_read_and_its_commit_is_applied_under_the_lock() -> (
    None
):
    # The first attempt reads the payment without its lock. Here the browser return's query
    # applies the same result in between, so that attempt's version check fails and writes
    # nothing; the locked attempt then finds the payment decided and keeps the delivery's key.
    world = MemoryWorld()
    payment = await opened(world)
    callback = world.gateway.pay(payment.cart_id)
    query = dataclasses.replace(callback, source=ResultSource.QUERY)
    reads: list[bool] = []

    def overtaken() -> UnitOfWork:
        unit = world.deps.uow()
        read = unit.payments.get_by_tran_ref

        async def read_then_let_the_query_in(
            tran_ref: str, *, for_update: bool = False
        ) -> Payment | None:
            found = await read(tran_ref, for_update=for_update)
            reads.append(for_update)
            if len(reads) == 1:
                await apply_result(world.deps, query, dedupe_key="query-1")
            return found

        unit.payments.get_by_tran_ref = read_then_let_the_query_in  # type: ignore[method-assign]
        return unit

    told: list[Outcome] = []
    deps = dataclasses.replace(world.deps, uow=overtaken)
    stored, outcome = await apply_result(
        deps, callback, dedupe_key="delivery-1", on_outcome=told.append
    )

    assert reads == [False, True]  # without the lock, then again under it
    assert outcome.kind is OutcomeKind.DUPLICATE  # the same news, already applied
    assert told == [outcome]
    assert stored.state is PaymentState.COMPLETED
    assert world.outbox_types(payment.id).count("payment.completed") == 1
    assert world.store.inbox.keys() >= {"delivery-1", "query-1"}  # PayTabs' retry: a duplicate
    _, again = await apply_result(world.deps, callback, dedupe_key="delivery-1")
    assert again.kind is OutcomeKind.DUPLICATE


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


@pytest.mark.parametrize(
    "mismatch",
    [
        {"profile_id": 111111},
        {"amount": Money.of("1.00", "SAR")},
        {"charged": Money.of("0.01", "SAR")},
        {"cart_id": "cart-of-someone-else"},
    ],
)
async def test_a_mismatched_result_after_the_genuine_one_is_quarantined_not_a_duplicate(
    mismatch: dict[str, object],
) -> None:
    # Business checks come before dedupe: the genuine result took "d-1", and a mismatched
    # one with the same key must still be quarantined (and alerted), not hidden as a repeat.
    world = MemoryWorld()
    payment = await opened(world)
    genuine = world.gateway.pay(payment.cart_id)
    paid, applied = await apply_result(world.deps, genuine, dedupe_key="d-1", exact_key="g-1")
    tampered = dataclasses.replace(genuine, **mismatch)  # type: ignore[arg-type]

    _, first = await apply_result(world.deps, tampered, dedupe_key="d-1", exact_key="t-1")
    _, repeat = await apply_result(world.deps, tampered, dedupe_key="d-1", exact_key="t-1")
    again, duplicate = await apply_result(world.deps, genuine, dedupe_key="d-1", exact_key="g-1")

    assert applied.kind is OutcomeKind.APPLIED
    assert first.kind is OutcomeKind.QUARANTINED
    assert repeat.kind is OutcomeKind.DUPLICATE  # the exact bytes again: no second alert
    assert duplicate.kind is OutcomeKind.DUPLICATE
    # The duplicate's payment is the stored one, untouched by the checks that ran first.
    # Money on this payment's own cart that it cannot accept is noted once for review (one
    # more version, one payment.conflict event); someone else's result writes nothing.
    noted = "amount" in mismatch or "charged" in mismatch
    assert again.has_conflict is noted
    assert again.version == paid.version + noted
    assert len(again.history) == len(paid.history)
    if not noted:
        assert again.updated_at == paid.updated_at
    assert world.stored(payment.id).state is PaymentState.COMPLETED
    assert world.outbox_types(payment.id).count("payment.completed") == 1
    assert world.outbox_types(payment.id).count("payment.conflict") == noted


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
