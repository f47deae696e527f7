"""Creating a payment, on the in-memory ports (the SQL and simulator run: test_lifecycle.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

import pytest

from paytabs_guard.domain import GatewayResult, Payment, PaymentState, ResultSource, Trigger
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayRejected,
    PageDetails,
    PageOpened,
)
from paytabs_guard.service.payments import (
    MAX_PAGE_ATTEMPTS,
    IdempotentCreate,
    KeyTaken,
    create_payment,
    key_lease,
)
from paytabs_guard.service.ports import ClaimStatus, StoredResponse
from paytabs_guard.service.results import no_record_before, sync_payment
from testkit.clock import FakeClock
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


class HeldAnswer(FakeGateway):
    """PayTabs opens the page at once; its answer reaches the service when ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.answer = asyncio.Event()

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        opened = await super().open_page(payment, details)
        self.opened.set()
        await self.answer.wait()
        return opened


async def create_held() -> tuple[MemoryWorld, HeldAnswer, asyncio.Task[Payment]]:
    """A create whose page PayTabs has opened, still waiting for PayTabs' answer."""
    gateway = HeldAnswer()
    world = MemoryWorld(gateway=gateway)
    creating = asyncio.create_task(create_payment(world.deps, order()))
    await gateway.opened.wait()
    return world, gateway, creating


async def test_a_query_while_the_create_is_under_way_leaves_the_payment_to_it() -> None:
    # /process (or the browser return) asked PayTabs while the create still waited for its
    # answer: it found the page without its address, failed the payment, and the create's own
    # answer then got a 409. The create's request is the one to finish it.
    world, gateway, creating = await create_held()
    [payment_id] = world.store.payments
    synced = await sync_payment(world.deps, payment_id)
    assert synced.state is PaymentState.INITIATING
    # its last send by the send window, then as long again for the query resolving it
    assert no_record_before(world.deps, synced) == synced.updated_at + 2 * world.deps.send_window
    gateway.answer.set()
    created = await creating
    assert created.state is PaymentState.AWAITING_CUSTOMER
    assert created.redirect_url is not None
    assert world.outbox_types(payment_id) == ["payment.created", "payment.initiated"]


async def test_a_create_that_died_is_settled_once_its_request_can_no_longer_answer() -> None:
    world, _, creating = await create_held()
    creating.cancel()  # the process died with the create under way
    with contextlib.suppress(asyncio.CancelledError):
        await creating
    [payment_id] = world.store.payments
    world.clock.advance(2 * world.deps.send_window)
    synced = await sync_payment(world.deps, payment_id)
    # PayTabs holds the page, but nobody has its address: failed, not waiting for nobody
    assert synced.state is PaymentState.FAILED
    assert synced.history[-1].trigger is Trigger.NO_GATEWAY_RECORD


async def test_a_create_still_resolving_its_last_attempt_past_the_send_window_is_left_to_it() -> (
    None
):
    # The last send goes out within the send window, but the query that resolves an unclear
    # answer to it can take as long again: a sync in between failed a create still running.
    world, gateway, creating = await create_held()
    [payment_id] = world.store.payments
    world.clock.advance(world.deps.send_window + timedelta(seconds=1))
    assert (await sync_payment(world.deps, payment_id)).state is PaymentState.INITIATING
    gateway.answer.set()
    assert (await creating).state is PaymentState.AWAITING_CUSTOMER


async def test_a_sync_that_asked_about_a_create_which_then_moved_on_leaves_it_alone() -> None:
    # The sync read the payment initiating (its create long quiet), asked PayTabs, and while it
    # asked, the create got its page: the sync's "unknown, then failed" would undo a page
    # PayTabs had opened, and the create would get a 409.
    world, gateway, creating = await create_held()
    [payment_id] = world.store.payments
    world.clock.advance(2 * world.deps.send_window)
    asked = gateway.transactions

    async def create_finishes_first(cart_id: str) -> Sequence[GatewayResult]:
        gateway.answer.set()
        await creating
        return await asked(cart_id)

    gateway.transactions = create_finishes_first  # type: ignore[method-assign]
    synced = await sync_payment(world.deps, payment_id)
    created = await creating
    assert created.state is PaymentState.AWAITING_CUSTOMER
    assert synced.state is PaymentState.AWAITING_CUSTOMER
    assert world.outbox_types(payment_id) == ["payment.created", "payment.initiated"]


class LostAnswers(FakeGateway):
    """Every page's answer is lost after ``seconds`` (the clock moves as PayTabs keeps the
    create waiting), and a query finds the page without its address."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds = seconds

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        self.pages.append(details)
        self.clock.advance(self.seconds)
        page = self._record(payment, status=None, source=ResultSource.QUERY)
        return PageOpened(tran_ref=page.tran_ref, redirect_url=None, found=page)


@pytest.mark.parametrize(("seconds", "attempts"), [(1, MAX_PAGE_ATTEMPTS), (20, 2), (60, 1)])
async def test_a_create_starts_no_page_attempt_that_could_outlast_its_keys_lease(
    seconds: float, attempts: int
) -> None:
    # Answers lost at once: every attempt fits. Slow ones: an attempt starts only while one at
    # its longest (a send window, then as long for the query) still ends within the lease, so a
    # retry under the key never hears "interrupted" from a create that is still running.
    clock = FakeClock()
    world = MemoryWorld(gateway=LostAnswers(clock, seconds), clock=clock)
    window, lease = world.deps.send_window, key_lease(world.deps.send_window)
    assert (window, lease) == (timedelta(seconds=90), timedelta(seconds=210))
    started = clock.now
    payment = await create_payment(world.deps, order(), idempotency=keyed())
    assert len(world.gateway.pages) == attempts
    assert payment.state is PaymentState.FAILED
    assert payment.history[-1].trigger is Trigger.NO_GATEWAY_RECORD
    assert clock.now - started <= lease
