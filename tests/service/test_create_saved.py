"""The create's second write goes behind the version check without re-reading the payment; when
another transaction saved the payment in between, it is reloaded under its lock instead."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection, Sequence

import pytest
from sqlalchemy import text

from paytabs_guard.adapters.sql.statements import counting
from paytabs_guard.domain import (
    FollowUpType,
    GatewayResult,
    Money,
    Operation,
    Payment,
    PaymentState,
)
from paytabs_guard.service.gateway import Gateway, PageDetails, PageOpened
from paytabs_guard.service.payments import CreatePayment, create_payment

from .conftest import World

pytestmark = pytest.mark.anyio

ORDER = CreatePayment(amount=Money.of("10.00", "SAR"), description="NestCMS plan")


class SavedByAnotherWriter:
    """A gateway that, while PayTabs opens the page, lets another transaction save the payment
    (as a reconciler or an early callback would): the row's version moves on."""

    def __init__(self, inner: Gateway, world: World) -> None:
        self._inner = inner
        self._world = world

    def unavailable_for(self, operation: Operation) -> float | None:
        return self._inner.unavailable_for(operation)

    def turn_away(self, operation: Operation) -> float | None:
        return self.unavailable_for(operation)

    def reserve(self, operation: Operation) -> contextlib.AbstractContextManager[object]:
        return self._inner.reserve(operation)

    async def wait_available(self, operation: Operation, max_wait: float) -> bool:
        return await self._inner.wait_available(operation, max_wait)

    async def open_page(self, payment: Payment, details: PageDetails) -> PageOpened:
        async with self._world.engine.begin() as connection:
            await connection.execute(
                text("UPDATE payments SET version = version + 1 WHERE id = :id"),
                {"id": payment.id},
            )
        return await self._inner.open_page(payment, details)

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        return await self._inner.transactions(cart_id)

    async def follow_up(
        self,
        payment: Payment,
        kind: FollowUpType,
        amount: Money,
        *,
        parent_tran_ref: str,
        known_tran_refs: Collection[str],
        sequence: int = 1,
    ) -> GatewayResult:
        return await self._inner.follow_up(
            payment,
            kind,
            amount,
            parent_tran_ref=parent_tran_ref,
            known_tran_refs=known_tran_refs,
            sequence=sequence,
        )

    async def charge_token(
        self, payment: Payment, *, token: str, token_tran_ref: str, callback_url: str
    ) -> GatewayResult:
        return await self._inner.charge_token(
            payment, token=token, token_tran_ref=token_tran_ref, callback_url=callback_url
        )

    async def delete_token(self, token: str) -> None:
        await self._inner.delete_token(token)


async def test_the_page_is_recorded_without_reading_the_payment_again(world: World) -> None:
    with counting(world.engine) as count:
        payment = await create_payment(world.deps, ORDER)
    assert payment.state is PaymentState.AWAITING_CUSTOMER
    assert not any(text.startswith("SELECT") for text in count.texts), count.describe()


async def test_a_payment_saved_by_another_writer_meanwhile_is_reloaded_and_still_opened(
    world: World,
) -> None:
    deps = dataclasses.replace(world.deps, gateway=SavedByAnotherWriter(world.deps.gateway, world))
    with counting(world.engine) as count:
        payment = await create_payment(deps, ORDER)
    assert payment.state is PaymentState.AWAITING_CUSTOMER
    assert payment.version == 3  # inserted (1), bumped by the other writer (2), page ready (3)
    assert any(text.startswith("SELECT") for text in count.texts), count.describe()
    assert await world.outbox_types(payment.id) == ["payment.created", "payment.initiated"]
