"""The in-memory ports keep the promises the use cases rely on from SQL (service/ports.py),
so a use case that passes on them is not passing on a fake that forgives what SQL refuses."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from paytabs_guard.domain import PaymentState
from paytabs_guard.service.payments import create_payment
from paytabs_guard.service.ports import StaleVersion

from .memory_world import MemoryWorld, order

pytestmark = pytest.mark.anyio


async def test_leaving_without_commit_leaves_no_trace() -> None:
    world = MemoryWorld()
    payment = await create_payment(world.deps, order())
    world.clock.advance(timedelta(minutes=20))  # the page may expire
    async with world.deps.uow() as uow:
        loaded = await uow.payments.get(payment.id, for_update=True)
        assert loaded is not None
        loaded.expire_page(at=world.clock())
        assert await uow.inbox.record("delivery-1", source="callback", now=world.clock())

    assert world.stored(payment.id).state is PaymentState.AWAITING_CUSTOMER
    assert world.store.inbox == {}
    assert world.outbox_types(payment.id) == ["payment.created", "payment.initiated"]


async def test_a_payment_saved_by_another_unit_of_work_meanwhile_is_stale() -> None:
    world = MemoryWorld()
    payment = await create_payment(world.deps, order())
    world.clock.advance(timedelta(minutes=20))
    async with world.deps.uow() as first, world.deps.uow() as second:
        mine = await first.payments.get(payment.id)
        theirs = await second.payments.get(payment.id)
        assert mine is not None
        assert theirs is not None
        theirs.expire_page(at=world.clock())
        await second.commit()
        mine.expire_page(at=world.clock())
        with pytest.raises(StaleVersion):
            await first.commit()

    assert world.outbox_types(payment.id).count("payment.expired") == 1


async def test_a_locked_payment_waits_for_the_holder_to_finish() -> None:
    world = MemoryWorld()
    payment = await create_payment(world.deps, order())
    order_of_events: list[str] = []

    async def second() -> None:
        async with world.deps.uow() as uow:
            await uow.payments.get(payment.id, for_update=True)
            order_of_events.append("second has it")

    async with world.deps.uow() as uow:
        await uow.payments.get(payment.id, for_update=True)
        waiter = asyncio.create_task(second())
        await asyncio.sleep(0)  # let the second unit of work reach the lock
        order_of_events.append("first commits")
        await uow.commit()
    await asyncio.wait_for(waiter, timeout=10)

    assert order_of_events == ["first commits", "second has it"]
