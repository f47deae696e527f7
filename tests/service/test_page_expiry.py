"""Unpaid pages expire at their deadline: the page-expiry sleeper against the real database and
simulator, with time moved by hand (the sleeper's sleep only ends when the test wakes it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy import text

from paytabs_guard.adapters.paytabs.paytabs_gateway import PayTabsGateway
from paytabs_guard.adapters.sql import create_engine, sql_unit_of_work_factory
from paytabs_guard.domain import GatewayResult, Money, Payment, PaymentState
from paytabs_guard.service.gateway import Gateway, PageDetails, PageOpened
from paytabs_guard.service.page_expiry import PageExpiry, clock_sleep
from paytabs_guard.service.payments import (
    CreatePayment,
    PaymentDeps,
    create_payment,
    get_payment,
)
from paytabs_guard.service.results import apply_result
from testkit.clock import FakeClock

from .conftest import World
from .page_expiry_support import WAIT, HandSleep

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def sleeper(deps: PaymentDeps) -> AsyncIterator[tuple[PaymentDeps, HandSleep]]:
    """A running sleeper and the deps whose creates wake it; stopped (promptly) on exit."""
    sleep = HandSleep()
    expiry = PageExpiry(sleep)
    armed = replace(deps, page_opened=expiry.arm)
    stop = asyncio.Event()
    task = asyncio.create_task(expiry.run_forever(armed, stop))
    try:
        await sleep.next_sleep()
        yield armed, sleep
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            await task  # stop wakes it: no cancellation needed


def order(description: str = "Order 1001") -> CreatePayment:
    return CreatePayment(amount=Money.of("12.50", "SAR"), description=description)


async def expired_count(world: World, payment_id: str) -> tuple[int, int]:
    """(payment.expired events, transitions into expired) of one payment."""
    async with world.engine.connect() as connection:
        events = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE payment_id = :id AND type = 'payment.expired'"),
            {"id": payment_id},
        )
    payment = await get_payment(world.deps, payment_id)
    moves = [entry for entry in payment.history if entry.to_state is PaymentState.EXPIRED]
    return int(events or 0), len(moves)


async def test_a_page_expires_at_its_deadline_and_not_a_second_before(world: World) -> None:
    async with sleeper(world.deps) as (deps, sleep):
        payment = await create_payment(deps, order())
        assert payment.expires_at is not None
        await sleep.next_sleep()
        assert sleep.asked[-1] == payment.expires_at  # it sleeps until exactly that moment

        world.clock.now = payment.expires_at - timedelta(seconds=1)
        await sleep.look()
        assert (await get_payment(deps, payment.id)).state is PaymentState.AWAITING_CUSTOMER
        assert sleep.asked[-1] == payment.expires_at

        world.clock.now = payment.expires_at
        await sleep.look()
        assert (await get_payment(deps, payment.id)).state is PaymentState.EXPIRED
        assert await expired_count(world, payment.id) == (1, 1)
        assert sleep.asked[-1] is None  # nothing waits any more


class SlowToAnswer:
    """The gateway, with PayTabs' answer to a create taking ``seconds`` on the test's clock."""

    def __init__(self, gateway: Gateway, clock: FakeClock, seconds: float) -> None:
        self._gateway, self._clock, self._seconds = gateway, clock, seconds

    def __getattr__(self, name: str) -> object:
        return getattr(self._gateway, name)

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        opened = await self._gateway.open_page(payment, details)
        self._clock.advance(self._seconds)  # PayTabs opened the page, then answered late
        return opened


async def test_the_deadline_counts_from_paytabs_answer_not_from_the_request(
    world: World,
) -> None:
    """PayTabs counts the TTL from when it received the request; counted here from when the
    create started, a create that took 3 s expired a page PayTabs kept open 3 s more, and a
    customer who paid in those seconds was charged for an expired payment."""
    started = world.clock.now
    late = cast(Gateway, SlowToAnswer(world.deps.gateway, world.clock, 3.0))  # the rest as is
    slow = replace(world.deps, gateway=late)
    async with sleeper(slow) as (deps, sleep):
        payment = await create_payment(deps, order())
        answered = started + timedelta(seconds=3)
        assert payment.expires_at == answered + deps.page_ttl
        # past where the deadline counted from the request's start was: still waiting
        world.clock.now = started + deps.page_ttl + timedelta(seconds=1)
        await sleep.look()
        assert (await get_payment(deps, payment.id)).state is PaymentState.AWAITING_CUSTOMER
        world.clock.now = payment.expires_at
        await sleep.look()
        assert (await get_payment(deps, payment.id)).state is PaymentState.EXPIRED


async def test_a_page_created_later_with_an_earlier_deadline_wakes_the_sleeper(
    world: World,
) -> None:
    async with sleeper(world.deps) as (deps, sleep):
        first = await create_payment(deps, order("Order 1"))
        await sleep.next_sleep()
        assert first.expires_at is not None
        assert sleep.asked[-1] == first.expires_at

        short = replace(deps, page_ttl=timedelta(minutes=5))
        second = await create_payment(short, order("Order 2"))
        assert second.expires_at is not None
        assert second.expires_at < first.expires_at
        await sleep.next_sleep()  # woken by the create alone: the test did not wake it
        assert sleep.asked[-1] == second.expires_at

        world.clock.now = second.expires_at
        await sleep.look()
        assert (await get_payment(deps, second.id)).state is PaymentState.EXPIRED
        assert (await get_payment(deps, first.id)).state is PaymentState.AWAITING_CUSTOMER
        assert sleep.asked[-1] == first.expires_at


async def test_a_restarted_sleeper_finds_its_deadlines_in_the_database(world: World) -> None:
    # Created while no sleeper ran (world.deps tells nobody): one is overdue at the start.
    overdue = await create_payment(replace(world.deps, page_ttl=timedelta(minutes=1)), order())
    waiting = await create_payment(world.deps, order("Order 2"))
    assert waiting.expires_at is not None
    world.clock.advance(timedelta(minutes=2))

    async with sleeper(world.deps) as (_, sleep):
        assert (await get_payment(world.deps, overdue.id)).state is PaymentState.EXPIRED
        assert sleep.asked == [waiting.expires_at]
        world.clock.now = waiting.expires_at
        await sleep.look()
        assert (await get_payment(world.deps, waiting.id)).state is PaymentState.EXPIRED


async def test_two_instances_at_one_deadline_expire_each_page_once(world: World) -> None:
    payments = [await create_payment(world.deps, order(f"Order {n}")) for n in range(4)]
    deadline = max(p.expires_at for p in payments if p.expires_at is not None)
    world.clock.now = deadline
    second_engine = create_engine(world.database_url)
    other = replace(world.deps, uow=sql_unit_of_work_factory(second_engine))
    try:
        # Both look at the same moment, each with its own database connections.
        nexts = await asyncio.gather(
            PageExpiry(HandSleep()).tick(world.deps), PageExpiry(HandSleep()).tick(other)
        )
    finally:
        await second_engine.dispose()
    assert list(nexts) == [None, None]
    for payment in payments:
        assert (await get_payment(world.deps, payment.id)).state is PaymentState.EXPIRED
        assert await expired_count(world, payment.id) == (1, 1)


async def test_a_page_paid_just_before_its_deadline_completes_instead(world: World) -> None:
    await world.faults(callback_withhold_rate=1.0)  # the callback is late: only a query knows
    async with sleeper(world.deps) as (deps, sleep):
        payment = await create_payment(deps, order())
        assert payment.redirect_url is not None
        assert payment.expires_at is not None
        world.clock.now = payment.expires_at - timedelta(seconds=1)
        await world.pay(payment.redirect_url)
        world.clock.now = payment.expires_at
        await sleep.look()
    assert (await get_payment(world.deps, payment.id)).state is PaymentState.COMPLETED
    assert await expired_count(world, payment.id) == (0, 0)
    assert "payment.completed" in await world.outbox_types(payment.id)


class PaidWhileAsked(PayTabsGateway):
    """PayTabs answers that it holds no transaction for the cart and, before that answer is
    acted on, the shopper's payment lands and its callback is applied (``land``)."""

    def __init__(self, base: PayTabsGateway, land: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(base._paytabs, base._breakers)
        self._land = land

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        await super().transactions(cart_id)  # asked for real; the answer: nothing paid yet
        await self._land(cart_id)
        return []


async def test_a_callback_between_the_query_and_the_expiry_wins(world: World) -> None:
    await world.faults(callback_withhold_rate=1.0)
    payment = await create_payment(world.deps, order())
    assert payment.redirect_url is not None
    assert payment.expires_at is not None
    redirect_url = payment.redirect_url

    async def land(cart_id: str) -> None:
        await world.pay(redirect_url)
        [paid] = await world.deps.gateway.transactions(cart_id)
        await apply_result(world.deps, paid)

    assert isinstance(world.deps.gateway, PayTabsGateway)
    racing = replace(world.deps, gateway=PaidWhileAsked(world.deps.gateway, land))
    world.clock.now = payment.expires_at
    assert await PageExpiry(HandSleep()).tick(racing) is None  # no error: it lost, did nothing
    assert (await get_payment(world.deps, payment.id)).state is PaymentState.COMPLETED
    assert await expired_count(world, payment.id) == (0, 0)


@pytest.mark.parametrize("ahead", [timedelta(hours=-1), timedelta(0)])
async def test_the_clock_sleep_does_not_wait_for_a_deadline_already_reached(
    ahead: timedelta,
) -> None:
    clock = FakeClock()
    sleep = clock_sleep(clock)
    async with asyncio.timeout(WAIT):
        await sleep(clock.now + ahead, asyncio.Event())  # never set: only the deadline ends it


async def test_the_clock_sleep_ends_when_woken_however_far_the_deadline() -> None:
    clock = FakeClock()
    wake = asyncio.Event()
    wake.set()
    async with asyncio.timeout(WAIT):
        await clock_sleep(clock)(clock.now + timedelta(days=1), wake)
        await clock_sleep(clock)(None, wake)
