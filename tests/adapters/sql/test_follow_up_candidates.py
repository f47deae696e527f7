"""``awaiting_follow_ups``: the payments reconciliation asks PayTabs about because a follow-up
of theirs is unsettled (held with its answer lost, or pending), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from paytabs_guard.domain import GatewayStatus, Payment, TranType
from paytabs_guard.service.ports import UnitOfWorkFactory

from .builders import A, P, applied, at, completed_sale, result, sar

pytestmark = pytest.mark.anyio


def refunded(payment_id: str, status: GatewayStatus, minute: float) -> Payment:
    payment = completed_sale(payment_id)
    refund = result(
        payment,
        status,
        tran_ref=f"TSTREF-{payment_id}",
        tran_type=TranType.REFUND,
        previous=payment.tran_ref,
        amount=sar("30.00"),
    )
    applied(payment.apply_gateway_result(refund, at=at(minute)))
    return payment


def held(payment_id: str, minute: float) -> Payment:
    payment = completed_sale(payment_id)  # updated at minute 3
    assert payment.tran_ref is not None
    payment.hold_follow_up(TranType.REFUND, sar("30.00"), payment.tran_ref, at=at(minute))
    return payment


async def _candidates(uow: UnitOfWorkFactory, minute: float, limit: int = 10) -> list[str]:
    async with uow() as unit:
        return list(await unit.payments.awaiting_follow_ups(before=at(minute), limit=limit))


async def test_held_and_pending_follow_ups_are_candidates_once_old_enough(
    uow: UnitOfWorkFactory,
) -> None:
    async with uow() as unit:
        for payment in (
            completed_sale("pay_plain"),
            refunded("pay_settled", A, 4),
            refunded("pay_pending", P, 5),
            held("pay_held", 6),
            held("pay_young", 20),
        ):
            unit.payments.add(payment)
        await unit.commit()

    # oldest change first: pay_held was last updated at minute 3, pay_pending at 5
    assert await _candidates(uow, 10) == ["pay_held", "pay_pending"]
    assert await _candidates(uow, 10, limit=1) == ["pay_held"]
    assert await _candidates(uow, 5.5) == ["pay_pending"]  # the hold is younger than that
    assert await _candidates(uow, 4) == []
    assert await _candidates(uow, 30) == ["pay_held", "pay_young", "pay_pending"]

    # settled: the pending refund approved, the hold answered
    async with uow() as unit:
        pending = await unit.payments.get("pay_pending", for_update=True)
        hold = await unit.payments.get("pay_held", for_update=True)
        assert pending is not None
        assert hold is not None
        applied(
            pending.apply_gateway_result(
                result(
                    pending,
                    A,
                    tran_ref="TSTREF-pay_pending",
                    tran_type=TranType.REFUND,
                    previous=pending.tran_ref,
                    amount=sar("30.00"),
                ),
                at=at(7),
            )
        )
        hold.release_follow_up()
        await unit.commit()
    assert await _candidates(uow, 30) == ["pay_young"]
