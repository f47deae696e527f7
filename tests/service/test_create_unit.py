"""Creating a payment, on the in-memory ports (the SQL and simulator run: test_lifecycle.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paytabs_guard.domain import Payment, PaymentState, ResultSource, Trigger
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayRejected,
    PageDetails,
    PageOpened,
)
from paytabs_guard.service.payments import IdempotentCreate, KeyTaken, create_payment
from paytabs_guard.service.ports import ClaimStatus, StoredResponse
from testkit.gateway import PAGE_BASE, FakeGateway

from .memory_world import MemoryWorld, order

pytestmark = pytest.mark.anyio

DAY = 24 * 3600


def keyed(key: str = "key-1", fingerprint: str = "fp-1") -> IdempotentCreate:
    return IdempotentCreate(
        scope="create:merchant",
        key=key,
        fingerprint=fingerprint,
        ttl_seconds=DAY,
        answer=lambda p: StoredResponse(201, f'{{"id": "{p.id}"}}', p.id),
    )


async def test_create_opens_a_page_and_commits_created_then_initiated() -> None:
    world = MemoryWorld()
    payment = await create_payment(world.deps, order("12.500", "KWD"))

    assert payment.state is PaymentState.AWAITING_CUSTOMER
    assert payment.redirect_url == PAGE_BASE + str(payment.tran_ref)
    stored = world.stored(payment.id)
    assert stored.state is PaymentState.AWAITING_CUSTOMER
    assert stored.version == 2  # inserted, then the page's answer saved over it
    assert world.outbox_types(payment.id) == ["payment.created", "payment.initiated"]
    assert world.pages_opened == [world.clock.now + timedelta(minutes=20)]
    [page] = world.gateway.pages
    assert page.callback_url == "https://shop.example/payments/v2/webhook"
    assert page.ttl_minutes == 20


async def test_an_open_circuit_answers_at_once_and_stores_nothing() -> None:
    world = MemoryWorld()
    world.gateway.open_circuits["create"] = 7.5

    with pytest.raises(GatewayNotReached) as raised:
        await create_payment(world.deps, order())

    assert raised.value.retry_after == 7.5
    assert world.store.payments == {}
    assert world.store.outbox == []


async def test_a_refused_page_fails_the_payment_and_announces_no_deadline() -> None:
    world = MemoryWorld()
    world.gateway.fail_next("create", GatewayRejected("Invalid profile", code=4))

    payment = await create_payment(world.deps, order())

    assert payment.state is PaymentState.FAILED
    assert world.stored(payment.id).state is PaymentState.FAILED
    assert world.pages_opened == []


async def test_unavailable_during_the_call_fails_the_payment_and_tells_the_caller() -> None:
    world = MemoryWorld()
    world.gateway.fail_next("create", GatewayNotReached("connection refused", retry_after=2))

    with pytest.raises(GatewayNotReached):
        await create_payment(world.deps, order())

    [stored] = world.store.payments.values()
    assert stored.state is PaymentState.FAILED


async def test_a_lost_answer_leaves_the_payment_unknown_for_reconciliation() -> None:
    world = MemoryWorld()
    world.gateway.fail_next("create", GatewayOutcomeUnknown("read timeout"))

    payment = await create_payment(world.deps, order())

    assert payment.state is PaymentState.UNKNOWN
    assert world.stored(payment.id).state is PaymentState.UNKNOWN


async def test_the_key_commits_with_the_payment_and_replays_its_answer() -> None:
    world = MemoryWorld()
    first = keyed()
    payment = await create_payment(world.deps, order(), idempotency=first)
    assert (first.claimed, first.completed) == (True, True)

    with pytest.raises(KeyTaken) as again:
        await create_payment(world.deps, order(), idempotency=keyed())
    assert again.value.claim.status is ClaimStatus.COMPLETED
    assert again.value.claim.response == StoredResponse(
        201, f'{{"id": "{payment.id}"}}', payment.id
    )

    with pytest.raises(KeyTaken) as other:
        await create_payment(world.deps, order(), idempotency=keyed(fingerprint="fp-2"))
    assert other.value.claim.status is ClaimStatus.MISMATCH
    assert len(world.store.payments) == 1  # neither retry wrote a payment


async def test_a_key_whose_create_could_not_start_is_not_kept() -> None:
    world = MemoryWorld()
    world.gateway.open_circuits["create"] = 1.0
    with pytest.raises(GatewayNotReached):
        await create_payment(world.deps, order(), idempotency=keyed())

    del world.gateway.open_circuits["create"]
    payment = await create_payment(world.deps, order(), idempotency=keyed())

    assert payment.state is PaymentState.AWAITING_CUSTOMER


class LostThenUnreachable(FakeGateway):
    """The first page's answer is lost (a query finds the unpaid page, not its address); every
    later attempt is turned away before it is sent (the breaker opened meanwhile)."""

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        if not self.pages:
            self.pages.append(details)
            page = self._record(payment, status=None, source=ResultSource.QUERY)
            return PageOpened(tran_ref=page.tran_ref, redirect_url=None, found=page)
        raise GatewayNotReached("circuit open", retry_after=5.0)


async def test_an_attempt_turned_away_after_one_reached_paytabs_ends_failed_under_its_key() -> None:
    # "Nothing was sent" was untrue (the first attempt opened a page nobody can reach), and the
    # key was let go, so a retry with it made a second payment.
    world = MemoryWorld(gateway=LostThenUnreachable())
    first = keyed()
    payment = await create_payment(world.deps, order(), idempotency=first)
    assert payment.state is PaymentState.FAILED
    assert payment.history[-1].trigger is Trigger.NO_GATEWAY_RECORD
    assert "earlier attempts were lost" in payment.history[-2].reason
    assert (first.claimed, first.completed) == (True, True)
    with pytest.raises(KeyTaken) as again:
        await create_payment(world.deps, order(), idempotency=keyed())
    assert again.value.claim.status is ClaimStatus.COMPLETED
    assert len(world.store.payments) == 1
    assert world.outbox_types(payment.id)[-1] == "payment.failed"
