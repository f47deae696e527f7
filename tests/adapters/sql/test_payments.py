"""Payments survive storage field for field, and are found by id, cart id, tran_ref and listing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from paytabs_guard.domain import Payment, PaymentState, TranType
from paytabs_guard.service.ports import UnitOfWorkFactory

from .builders import (
    A,
    applied,
    at,
    awaiting,
    completed_sale,
    kwd,
    kwd_auth,
    kwd_auth_captured_refunded,
    kwd_follow_up_steps,
    new_payment,
    refund_in_flight,
    result,
    same_payment,
    with_abandoned_cart,
    with_conflict,
)

pytestmark = pytest.mark.anyio

SHAPES: dict[str, Callable[[], Payment]] = {
    "created": lambda: new_payment("pay_new"),
    "awaiting": lambda: awaiting("pay_page"),
    "completed": lambda: completed_sale("pay_done"),
    "kwd_follow_ups": kwd_auth_captured_refunded,
    "conflict": with_conflict,
    "refund_in_flight": refund_in_flight,
    "abandoned_cart": with_abandoned_cart,
}


async def _store(uow: UnitOfWorkFactory, *payments: Payment) -> None:
    async with uow() as unit:
        for payment in payments:
            unit.payments.add(payment)
        await unit.commit()


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_payment_reads_back_exactly_as_it_was_saved(
    uow: UnitOfWorkFactory, shape: str
) -> None:
    payment = SHAPES[shape]()
    await _store(uow, payment)
    assert payment.version == 1
    assert payment.pending_events == []
    async with uow() as unit:
        stored = await unit.payments.get(payment.id)
    assert same_payment(stored, payment)


async def test_changes_made_after_loading_read_back_exactly(uow: UnitOfWorkFactory) -> None:
    payment = awaiting("pay_later")
    await _store(uow, payment)
    async with uow() as unit:
        loaded = await unit.payments.get(payment.id, for_update=True)
        assert loaded is not None
        loaded.apply_gateway_result(result(loaded, A), at=at(3))
        await unit.commit()
    async with uow() as unit:
        again = await unit.payments.get(payment.id)
    assert same_payment(again, loaded)
    assert again is not None
    assert again.version == 2
    assert again.state is PaymentState.COMPLETED


async def test_a_payment_saved_after_every_step_reads_back_exactly(
    uow: UnitOfWorkFactory,
) -> None:
    # Every child row (history, follow-ups, status changes) written by updates, not the insert.
    payment = kwd_auth("pay_steps")
    await _store(uow, payment)
    steps = kwd_follow_up_steps(payment)
    for minute, step in enumerate(steps, start=3):
        async with uow() as unit:
            loaded = await unit.payments.get("pay_steps", for_update=True)
            assert loaded is not None
            applied(loaded.apply_gateway_result(step, at=at(minute)))
            await unit.commit()
    async with uow() as unit:
        stored = await unit.payments.get("pay_steps")
    assert same_payment(stored, kwd_auth_captured_refunded("pay_steps"), version=False)
    assert stored is not None
    assert stored.version == 1 + len(steps)
    assert stored.refunded == kwd("2.250")
    assert stored.pending_refunds == kwd("1.125")


async def test_a_new_attempt_saved_in_steps_reads_back_exactly(uow: UnitOfWorkFactory) -> None:
    # The new attempt rewrites the cart id and drops the abandoned page's transaction record.
    payment = new_payment("pay_na")
    await _store(uow, payment)
    expected = with_abandoned_cart("pay_na")
    async with uow() as unit:
        loaded = await unit.payments.get("pay_na", for_update=True)
        assert loaded is not None
        applied(loaded.mark_initiating(at=at(0.1), expires_at=at(20)))
        applied(loaded.initiation_ambiguous(at=at(0.2)))
        await unit.commit()
    async with uow() as unit:
        loaded = await unit.payments.get("pay_na", for_update=True)
        assert loaded is not None
        applied(loaded.new_attempt("cart-pay_na-2", at=at(1)))
        page = expected.history[-1]
        assert expected.tran_ref is not None
        assert expected.expires_at is not None
        applied(
            loaded.page_created(
                expected.tran_ref,
                expected.expires_at,
                at=page.at,
                redirect_url=expected.redirect_url,
            )
        )
        await unit.commit()
    async with uow() as unit:
        stored = await unit.payments.get_by_cart_id("cart-pay_na")
    assert same_payment(stored, expected, version=False)


async def test_a_payment_is_found_by_each_cart_id_it_ever_used(uow: UnitOfWorkFactory) -> None:
    payment = with_abandoned_cart("pay_r")
    await _store(uow, payment, new_payment("pay_other"))
    async with uow() as unit:
        by_current = await unit.payments.get_by_cart_id("cart-pay_r-2")
        by_abandoned = await unit.payments.get_by_cart_id("cart-pay_r", for_update=True)
        nobody = await unit.payments.get_by_cart_id("cart-nobody")
    assert by_current is not None
    assert by_current.id == "pay_r"
    assert by_abandoned is by_current  # one object per payment in a unit of work
    assert nobody is None


async def test_a_payment_is_found_by_its_own_and_its_follow_ups_tran_refs(
    uow: UnitOfWorkFactory,
) -> None:
    payment = kwd_auth_captured_refunded("pay_k")
    await _store(uow, payment, completed_sale("pay_other"))
    assert payment.tran_ref is not None
    for ref in (payment.tran_ref, "TSTCAP-A", "TSTCAP-D", "TSTREF-1", "TSTREF-2"):
        async with uow() as unit:
            found = await unit.payments.get_by_tran_ref(ref, for_update=True)
        assert found is not None, ref
        assert found.id == "pay_k"
    async with uow() as unit:
        assert await unit.payments.get_by_tran_ref("TST-unknown") is None
        assert await unit.payments.get("pay_missing") is None


async def test_a_cart_id_cannot_belong_to_two_payments(uow: UnitOfWorkFactory) -> None:
    await _store(uow, with_abandoned_cart("pay_a"))
    reuse = new_payment("pay_b", cart_id="cart-pay_a")  # pay_a's abandoned cart id
    with pytest.raises(IntegrityError):
        await _store(uow, reuse)
    async with uow() as unit:
        assert await unit.payments.get("pay_b") is None


async def _listing(uow: UnitOfWorkFactory) -> list[Payment]:
    # Seven payments over five minutes; two pairs share a created_at (ties break on id).
    payments = [
        new_payment("pay_a", created=at(0)),
        awaiting("pay_b", created=at(1)),
        completed_sale("pay_c", created=at(1)),
        new_payment("pay_d", created=at(2)),
        awaiting("pay_e", created=at(3)),
        completed_sale("pay_f", created=at(4)),
        completed_sale("pay_g", created=at(4)),
    ]
    await _store(uow, *payments)
    return payments


async def test_list_pages_newest_first_through_every_payment_once(
    uow: UnitOfWorkFactory,
) -> None:
    await _listing(uow)
    seen: list[str] = []
    after = None
    while True:
        async with uow() as unit:
            page = await unit.payments.list(after=after, limit=3)
        if not page:
            break
        seen.extend(payment.id for payment in page)
        after = page[-1].id
    assert seen == ["pay_g", "pay_f", "pay_e", "pay_d", "pay_c", "pay_b", "pay_a"]


async def test_list_filters_by_state_and_creation_time(uow: UnitOfWorkFactory) -> None:
    await _listing(uow)
    async with uow() as unit:
        completed = await unit.payments.list(states=[PaymentState.COMPLETED])
        window = await unit.payments.list(created_from=at(1), created_to=at(4))
        both = await unit.payments.list(
            states=[PaymentState.AWAITING_CUSTOMER, PaymentState.CREATED],
            created_from=at(1),
            limit=1,
        )
        page_two = await unit.payments.list(states=[PaymentState.COMPLETED], after="pay_f")
        unknown_cursor = await unit.payments.list(after="pay_nope")
    assert [p.id for p in completed] == ["pay_g", "pay_f", "pay_c"]
    assert [p.id for p in window] == ["pay_e", "pay_d", "pay_c", "pay_b"]
    assert [p.id for p in both] == ["pay_e"]
    assert [p.id for p in page_two] == ["pay_c"]
    assert unknown_cursor == []
    assert all(len(p.history) >= 1 for p in completed)


async def test_stuck_gives_old_undecided_payments_oldest_first(uow: UnitOfWorkFactory) -> None:
    payments = await _listing(uow)
    undecided = [PaymentState.AWAITING_CUSTOMER, PaymentState.CREATED]
    async with uow() as unit:
        ids = await unit.payments.stuck(undecided, updated_before=at(3), limit=10)
        first_two = await unit.payments.stuck(undecided, updated_before=at(10), limit=2)
        none = await unit.payments.stuck([], updated_before=at(10), limit=10)
    # Updated_at is the last step's time: pages are created 12 seconds after the payment.
    by_id = {p.id: p for p in payments}
    assert ids == ["pay_a", "pay_b", "pay_d"]
    assert by_id["pay_b"].updated_at == at(1) + timedelta(seconds=12)
    assert first_two == ["pay_a", "pay_b"]
    assert none == []


async def test_a_transaction_record_the_payment_drops_is_dropped_from_storage(
    uow: UnitOfWorkFactory,
) -> None:
    # new_attempt() drops the abandoned page's record; storage mirrors the list it is given.
    payment = kwd_auth_captured_refunded("pay_drop")
    await _store(uow, payment)
    async with uow() as unit:
        loaded = await unit.payments.get("pay_drop", for_update=True)
        assert loaded is not None
        loaded.transactions = [t for t in loaded.transactions if t.tran_ref != "TSTCAP-D"]
        await unit.commit()
    async with uow() as unit:
        stored = await unit.payments.get("pay_drop")
        assert await unit.payments.get_by_tran_ref("TSTCAP-D") is None
    assert stored is not None
    assert [t.tran_ref for t in stored.transactions] == [
        t.tran_ref for t in payment.transactions if t.tran_ref != "TSTCAP-D"
    ]


async def test_a_follow_up_hold_is_saved_and_released(uow: UnitOfWorkFactory) -> None:
    await _store(uow, kwd_auth_captured_refunded("pay_h"))
    async with uow() as unit:
        payment = await unit.payments.get("pay_h", for_update=True)
        assert payment is not None
        hold = payment.hold_follow_up(TranType.REFUND, kwd("0.500"), "TSTCAP-A", at=at(9))
        await unit.commit()
    async with uow() as unit:
        held = await unit.payments.get("pay_h", for_update=True)
        assert held is not None
        assert held.hold == hold
        held.release_follow_up()
        await unit.commit()
    async with uow() as unit:
        released = await unit.payments.get("pay_h")
    assert released is not None
    assert released.hold is None
    assert released.version == 3
