"""The unit of work's after-commit hook: what it announces (a relay wake-up, a payment-result
metric) must only be announced for what was stored."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from paytabs_guard.service.ports import UnitOfWorkFactory

from .builders import awaiting, new_payment

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """Raised inside a unit of work to leave it early."""


async def test_callbacks_run_once_after_a_commit_in_the_order_given(
    uow: UnitOfWorkFactory,
) -> None:
    told: list[str] = []
    async with uow() as unit:
        unit.payments.add(new_payment("pay_told"))
        unit.after_commit(lambda: told.append("first"))
        unit.after_commit(lambda: told.append("second"))
        assert told == []  # nothing before the commit
        await unit.commit()
        assert told == ["first", "second"]
    assert told == ["first", "second"]  # leaving does not run them again
    async with uow() as unit:
        assert await unit.payments.get("pay_told") is not None


async def test_leaving_without_commit_or_on_an_error_runs_none(uow: UnitOfWorkFactory) -> None:
    told: list[str] = []
    async with uow() as unit:
        unit.payments.add(new_payment("pay_dropped"))
        unit.after_commit(lambda: told.append("rolled back"))

    async def fail() -> None:
        async with uow() as unit:
            unit.payments.add(new_payment("pay_failed"))
            unit.after_commit(lambda: told.append("failed"))
            raise Boom

    with pytest.raises(Boom):
        await fail()
    assert told == []


async def test_a_failed_commit_runs_none(uow: UnitOfWorkFactory) -> None:
    async with uow() as unit:
        unit.payments.add(awaiting("pay_first"))
        await unit.commit()
    told: list[str] = []

    async def commit_a_duplicate_cart() -> None:
        async with uow() as unit:
            unit.payments.add(new_payment("pay_dup", cart_id="cart-pay_first"))
            unit.after_commit(lambda: told.append("never stored"))
            await unit.commit()

    with pytest.raises(IntegrityError):
        await commit_a_duplicate_cart()
    assert told == []


async def test_a_failing_callback_neither_undoes_the_commit_nor_stops_the_next(
    uow: UnitOfWorkFactory,
) -> None:
    told: list[str] = []

    def broken() -> None:
        raise RuntimeError("a wake-up that fails")

    async with uow() as unit:
        unit.payments.add(new_payment("pay_kept"))
        unit.after_commit(broken)
        unit.after_commit(lambda: told.append("still told"))
        await unit.commit()
    assert told == ["still told"]
    async with uow() as unit:
        assert await unit.payments.get("pay_kept") is not None
