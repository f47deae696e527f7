"""The payment lifecycle end to end through the use cases: real database, real simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from paytabs_guard.adapters.paytabs.transformers import PayTabsTransaction, to_gateway_result
from paytabs_guard.adapters.sql import create_engine, sql_unit_of_work_factory
from paytabs_guard.domain import (
    DomainError,
    FollowUpInProgress,
    GatewayResult,
    GatewayStatus,
    Money,
    OutcomeKind,
    Payment,
    PaymentState,
    RefundExceedsCaptured,
    ResultSource,
    Trigger,
)
from paytabs_guard.entrypoints.reconcile import reconcile
from paytabs_guard.service.follow_ups import refund_payment
from paytabs_guard.service.gateway import Gateway, GatewayNotReached, GatewayRejected
from paytabs_guard.service.payments import (
    CreatePayment,
    PaymentDeps,
    create_payment,
    get_payment,
)
from paytabs_guard.service.reconciliation import reconcile_once
from paytabs_guard.service.results import apply_result, sync_payment
from paytabs_guard.settings import load_settings
from paytabs_simulator.config import DEFAULT_SERVER_KEY

from .conftest import World, gateway_for

pytestmark = pytest.mark.anyio


def order(amount: str = "100.00", currency: str = "SAR") -> CreatePayment:
    return CreatePayment(amount=Money.of(amount, currency), description="NestCMS plan")


async def completed(world: World, amount: str = "100.00") -> str:
    payment = await create_payment(world.deps, order(amount))
    assert payment.redirect_url is not None
    await world.pay(payment.redirect_url)
    synced = await sync_payment(world.deps, payment.id)
    assert synced.state is PaymentState.COMPLETED
    return payment.id


async def test_create_opens_a_page_and_records_created_and_initiated(world: World) -> None:
    payment = await create_payment(world.deps, order("12.500", "KWD"))
    assert payment.state is PaymentState.AWAITING_CUSTOMER
    assert payment.redirect_url is not None
    assert payment.tran_ref is not None
    assert await world.outbox_types(payment.id) == ["payment.created", "payment.initiated"]
    [recorded] = await world.gateway_transactions(payment.cart_id)
    assert recorded["cart_amount"] == "12.500"


async def test_a_withheld_callback_is_repaired_by_reconciliation(world: World) -> None:
    await world.faults(callback_withhold_rate=1.0)
    payment = await create_payment(world.deps, order())
    assert payment.redirect_url is not None
    await world.pay(payment.redirect_url)
    assert (await get_payment(world.deps, payment.id)).state is PaymentState.AWAITING_CUSTOMER

    world.clock.advance(timedelta(minutes=10))
    report = await reconcile_once(world.deps, stuck_after=timedelta(minutes=5))
    assert report.examined == 1
    assert report.changed == 1
    assert (await get_payment(world.deps, payment.id)).state is PaymentState.COMPLETED
    assert (await world.outbox_types(payment.id)).count("payment.completed") == 1


async def paid_unheard(world: World) -> Payment:
    """A payment paid on its page, its callback withheld (set by the caller's faults)."""
    payment = await create_payment(world.deps, order())
    assert payment.redirect_url is not None
    await world.pay(payment.redirect_url)
    return payment


class _FailsFor:
    """The gateway, except that asking about one cart raises: a payment the pass cannot settle
    (as a row it could not read once made it)."""

    def __init__(self, gateway: Gateway, cart_id: str) -> None:
        self._gateway = gateway
        self._cart_id = cart_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    async def transactions(self, cart_id: str) -> Sequence[GatewayResult]:
        if cart_id == self._cart_id:
            raise RuntimeError("this payment cannot be settled")
        return await self._gateway.transactions(cart_id)


async def test_a_payment_reconciliation_cannot_settle_does_not_stop_the_others(
    world: World,
) -> None:
    await world.faults(callback_withhold_rate=1.0)
    stuck = []
    for _ in range(3):
        stuck.append(await paid_unheard(world))
        world.clock.advance(timedelta(seconds=1))  # the first is the oldest: the pass's first
    world.clock.advance(timedelta(minutes=10))
    failing = replace(world.deps, gateway=_FailsFor(world.deps.gateway, stuck[0].cart_id))

    report = await reconcile_once(failing, stuck_after=timedelta(minutes=5))

    assert (report.examined, report.failed, report.changed) == (3, 1, 2)
    states = [(await get_payment(world.deps, p.id)).state for p in stuck]
    assert states == [
        PaymentState.AWAITING_CUSTOMER,
        PaymentState.COMPLETED,
        PaymentState.COMPLETED,
    ]


async def test_an_unpaid_page_past_its_ttl_expires(world: World) -> None:
    payment = await create_payment(world.deps, order())
    world.clock.advance(timedelta(minutes=25))
    await reconcile_once(world.deps, stuck_after=timedelta(minutes=5))
    expired = await get_payment(world.deps, payment.id)
    assert expired.state is PaymentState.EXPIRED
    assert "payment.expired" in await world.outbox_types(payment.id)


async def test_a_page_expires_exactly_at_its_ttl_and_not_a_second_before(world: World) -> None:
    # A second guard for expiry, at the boundary, through sync_payment (the API's
    # /process path) rather than reconciliation.
    payment = await create_payment(world.deps, order())
    assert payment.expires_at is not None
    world.clock.now = payment.expires_at - timedelta(seconds=1)
    before = await sync_payment(world.deps, payment.id)
    assert before.state is PaymentState.AWAITING_CUSTOMER
    assert "payment.expired" not in await world.outbox_types(payment.id)
    world.clock.now = payment.expires_at
    at_ttl = await sync_payment(world.deps, payment.id)
    assert at_ttl.state is PaymentState.EXPIRED
    assert (await world.outbox_types(payment.id)).count("payment.expired") == 1


async def test_a_page_expires_at_the_first_pass_after_its_deadline(world: World) -> None:
    # stuck_after longer than the page's life: the deadline alone must bring it in.
    payment = await create_payment(world.deps, order())
    world.clock.advance(timedelta(minutes=19))
    early = await reconcile_once(world.deps, stuck_after=timedelta(hours=1))
    assert early.examined == 0  # neither stuck nor past its deadline: PayTabs is not asked
    world.clock.advance(timedelta(minutes=1, seconds=1))
    report = await reconcile_once(world.deps, stuck_after=timedelta(hours=1))
    assert report.examined == 1
    assert (await get_payment(world.deps, payment.id)).state is PaymentState.EXPIRED
    assert "payment.expired" in await world.outbox_types(payment.id)


async def test_two_reconcilers_at_once_apply_each_result_once(world: World) -> None:
    await world.faults(callback_withhold_rate=1.0)
    ids = [(await paid_unheard(world)).id for _ in range(5)]
    world.clock.advance(timedelta(minutes=10))
    second_engine = create_engine(world.database_url)
    other = PaymentDeps(
        uow=sql_unit_of_work_factory(second_engine),
        gateway=world.deps.gateway,
        clock=world.clock,
        profile_id=world.deps.profile_id,
        urls=world.deps.urls,
    )
    try:
        await asyncio.gather(
            reconcile_once(world.deps, stuck_after=timedelta(minutes=5)),
            reconcile_once(other, stuck_after=timedelta(minutes=5)),
        )
    finally:
        await second_engine.dispose()
    for payment_id in ids:
        payment = await get_payment(world.deps, payment_id)
        assert payment.state is PaymentState.COMPLETED
        assert [t.to_state for t in payment.history].count(PaymentState.COMPLETED) == 1
        assert (await world.outbox_types(payment_id)).count("payment.completed") == 1


async def test_out_of_order_and_repeated_results_end_in_the_right_state(world: World) -> None:
    payment = await create_payment(world.deps, order())
    assert payment.redirect_url is not None
    paid = await world.pay(payment.redirect_url)
    final = PayTabsTransaction.model_validate(paid["transaction"])
    pending = final.model_copy(
        update={"payment_result": final.payment_result.model_copy(update={"response_status": "P"})}  # type: ignore[union-attr]  # paid transactions carry a result
    )
    results = [
        to_gateway_result(t, ResultSource.CALLBACK) for t in (final, pending, final, pending)
    ]
    kinds = [(await apply_result(world.deps, r))[1].kind for r in results]
    assert kinds[0] is OutcomeKind.APPLIED
    assert OutcomeKind.APPLIED not in kinds[1:]
    done = await get_payment(world.deps, payment.id)
    assert done.state is PaymentState.COMPLETED
    assert results[1].status is GatewayStatus.PENDING


async def test_twenty_concurrent_deliveries_of_one_callback_make_one_transition(
    world: World,
) -> None:
    payment = await create_payment(world.deps, order())
    assert payment.redirect_url is not None
    paid = await world.pay(payment.redirect_url)
    result = to_gateway_result(
        PayTabsTransaction.model_validate(paid["transaction"]), ResultSource.CALLBACK
    )
    key = f"paytabs:{result.tran_ref}:{result.status}"
    outcomes = await asyncio.gather(
        *(apply_result(world.deps, result, dedupe_key=key) for _ in range(20))
    )
    kinds = [outcome.kind for _, outcome in outcomes]
    assert kinds.count(OutcomeKind.APPLIED) == 1
    assert (await world.outbox_types(payment.id)).count("payment.completed") == 1


async def test_partial_refunds_never_exceed_the_captured_amount(world: World) -> None:
    payment_id = await completed(world, "100.00")
    refunded = await refund_payment(world.deps, payment_id, Money.of("40.00", "SAR"))
    assert refunded.state is PaymentState.PARTIALLY_REFUNDED
    with pytest.raises(DomainError, match="refund"):
        await refund_payment(world.deps, payment_id, Money.of("60.01", "SAR"))
    done = await refund_payment(world.deps, payment_id, Money.of("60.00", "SAR"))
    assert done.state is PaymentState.REFUNDED
    assert done.refunded == Money.of("100.00", "SAR")


async def test_concurrent_refunds_never_exceed_the_captured_amount(world: World) -> None:
    payment_id = await completed(world, "100.00")
    attempts = await asyncio.gather(
        *(refund_payment(world.deps, payment_id, Money.of("30.00", "SAR")) for _ in range(5)),
        return_exceptions=True,
    )
    accepted = [a for a in attempts if not isinstance(a, BaseException)]
    refused = [a for a in attempts if isinstance(a, BaseException)]
    assert all(isinstance(r, DomainError | GatewayRejected) for r in refused), refused
    final = await get_payment(world.deps, payment_id)
    assert final.refunded <= Money.of("100.00", "SAR")
    assert final.refunded == Money(3000 * len(accepted), "SAR")
    assert final.hold is None
    gateway_refunds = [
        t for t in await world.gateway_transactions(final.cart_id) if t["tran_type"] == "Refund"
    ]
    # follow-ups of one payment take turns: the ones that overlapped were refused, not sent
    assert 1 <= len(gateway_refunds) == len(accepted) <= 3
    assert all(isinstance(r, FollowUpInProgress | RefundExceedsCaptured) for r in refused)


async def test_two_refunds_of_the_same_amount_are_not_mistaken_for_a_duplicate(
    world: World,
) -> None:
    payment_id = await completed(world, "100.00")
    await refund_payment(world.deps, payment_id, Money.of("30.00", "SAR"))
    again = await refund_payment(world.deps, payment_id, Money.of("30.00", "SAR"))
    assert again.refunded == Money.of("60.00", "SAR")
    refunds = [t for t in again.transactions if t.tran_type.value == "refund"]
    assert len({t.tran_ref for t in refunds}) == 2


async def test_an_open_circuit_fails_fast_without_a_payment_row(world: World) -> None:
    world.parts.breakers.get("create").force_open()
    with pytest.raises(GatewayNotReached) as caught:
        await create_payment(world.deps, order())
    assert caught.value.retry_after is not None
    async with world.deps.uow() as uow:
        assert list(await uow.payments.list()) == []


async def test_a_lost_page_url_opens_a_new_attempt_and_never_two_transactions_per_cart(
    world: World,
) -> None:
    await world.faults(error_rate=1.0, error_statuses=[502], error_phase="after",
                       fault_paths=["/payment/request"])  # fmt: skip
    parts = gateway_for(world.simulator.base_url, PAYTABS_RETRY_ATTEMPTS="0")
    deps = PaymentDeps(
        uow=world.deps.uow,
        gateway=parts.gateway,
        clock=world.clock,
        profile_id=world.deps.profile_id,
        urls=world.deps.urls,
    )
    try:
        payment = await create_payment(deps, order())
    finally:
        await parts.aclose()
    # every attempt's answer was lost, each found by query as an unpaid page
    assert len(payment.abandoned_cart_ids) == 4
    for cart_id in [*payment.abandoned_cart_ids, payment.cart_id]:
        assert len(await world.gateway_transactions(cart_id)) == 1
    # No page anyone can reach: failed, not a payment awaiting a customer it cannot send
    # anywhere (it was awaiting_customer with no redirect_url, and payment.initiated said
    # "send the customer to it").
    assert payment.state is PaymentState.FAILED
    assert payment.redirect_url is None
    assert payment.history[-1].trigger is Trigger.NO_GATEWAY_RECORD
    types = await world.outbox_types(payment.id)
    assert "payment.initiated" not in types
    assert types[-1] == "payment.failed"


async def unknown_create(world: World, *, landed: bool) -> Payment:
    """A create whose answer was lost and whose resolving query failed too: 202 unknown.
    ``landed``: PayTabs opened the page before the answer was lost (else it never saw it)."""
    await world.faults(error_rate=1.0, error_statuses=[502],
                       error_phase="after" if landed else "before",
                       fault_paths=["/payment/request", "/payment/query"])  # fmt: skip
    parts = gateway_for(world.simulator.base_url, PAYTABS_RETRY_ATTEMPTS="0")
    deps = replace(world.deps, gateway=parts.gateway)
    try:
        payment = await create_payment(deps, order())
    finally:
        await parts.aclose()
    assert payment.state is PaymentState.UNKNOWN
    await world.faults()
    return payment


async def test_a_202_whose_page_paytabs_holds_without_its_address_fails_when_confirmed(
    world: World,
) -> None:
    # The first query after the 202 finds the page, but a query gives no page address: nobody
    # can pay it. It was awaiting_customer with no redirect_url, the sale lost quietly.
    payment = await unknown_create(world, landed=True)
    assert len(await world.gateway_transactions(payment.cart_id)) == 1
    synced = await sync_payment(world.deps, payment.id)
    assert synced.state is PaymentState.FAILED
    assert synced.history[-1].trigger is Trigger.NO_GATEWAY_RECORD
    types = await world.outbox_types(payment.id)
    assert "payment.initiated" not in types
    assert types[-1] == "payment.failed"


async def test_a_202_page_paytabs_holds_nothing_for_fails_at_once(world: World) -> None:
    # Unlike a recurring charge (tests/api/test_saved_cards.py), a page that lands late takes
    # no money: nobody has its address. Failing at once lets the merchant open a new page while
    # the customer is still at the checkout; waiting out the send window lost those sales.
    payment = await unknown_create(world, landed=False)
    assert await world.gateway_transactions(payment.cart_id) == []
    synced = await sync_payment(world.deps, payment.id)
    assert synced.state is PaymentState.FAILED
    assert synced.history[-1].trigger is Trigger.NO_GATEWAY_RECORD


async def test_a_refused_page_fails_the_payment_with_paytabs_reason(world: World) -> None:
    payment = await create_payment(world.deps, order("10", "JPY"))
    assert payment.state is PaymentState.FAILED
    assert "Invalid currency code" in payment.history[-1].reason
    assert (await world.outbox_types(payment.id))[-1] == "payment.failed"


async def test_the_reconcile_command_completes_a_payment_whose_callback_was_lost(
    world: World,
) -> None:
    await world.faults(callback_withhold_rate=1.0)
    payment = await create_payment(world.deps, order())
    assert payment.redirect_url is not None
    await world.pay(payment.redirect_url)
    settings = load_settings(
        {
            "DATABASE_URL": world.database_url,
            "PAYTABS_PROFILE_ID": str(world.deps.profile_id),
            "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
            "PAYTABS_BASE_URL": world.simulator.base_url,
        }
    )
    report = await reconcile(settings, limit=10, stuck_after=timedelta(0))
    assert report["examined"] == 1
    assert report["changed"] == 1
    assert report["states"] == {"completed": 1}
    assert (await get_payment(world.deps, payment.id)).state is PaymentState.COMPLETED
