"""PaymentService over in-memory ports (fakes.py): fast checks of what the routes rely on.

The same use cases run against SQLite, PostgreSQL and the simulator in test_lifecycle.py and
the API tests; here the point is the service's own promises: the breaker check before any
storage, the relay woken once per commit (and never for a rollback), result metrics recorded
for what was stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from paytabs_guard.bootstrap import service_urls
from paytabs_guard.domain import (
    GatewayResult,
    GatewayStatus,
    Money,
    Operation,
    PaymentState,
    ResultSource,
)
from paytabs_guard.service.gateway import GatewayNotReached, GatewayRejected
from paytabs_guard.service.payments import (
    CreatePayment,
    PaymentDeps,
    PaymentNotFound,
    PaymentService,
    UnknownGatewayTransaction,
)
from paytabs_guard.service.ports import UnitOfWork

from .fakes import MemoryStore, ScriptedGateway

pytestmark = pytest.mark.anyio

PROFILE = 4321
NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
ORDER = CreatePayment(Money.of("25.00", "SAR"), "Order 7")


@dataclass
class Setup:
    store: MemoryStore
    gateway: ScriptedGateway
    service: PaymentService
    wakes: list[int] = field(default_factory=list)
    results: list[tuple[str, str, str, str]] = field(default_factory=list)


@pytest.fixture
def setup() -> Setup:
    store = MemoryStore()
    gateway = ScriptedGateway(PROFILE)
    deps = PaymentDeps(
        uow=store.unit_of_work,
        gateway=gateway,
        clock=lambda: NOW,
        profile_id=PROFILE,
        urls=service_urls("https://shop.example/"),
    )
    wakes: list[int] = []
    results: list[tuple[str, str, str, str]] = []

    def record(kind: str, source: str, previous: str, state: str) -> None:
        results.append((str(kind), str(source), str(previous), str(state)))

    # each wake notes how many commits had happened: a wake before its commit would show less
    service = PaymentService(deps, wake=lambda: wakes.append(store.commits), record=record)
    return Setup(store, gateway, service, wakes, results)


async def test_a_create_opens_a_page_with_the_urls_bootstrap_built(setup: Setup) -> None:
    setup.service.admit(Operation.CREATE)
    payment = await setup.service.create(ORDER)
    assert payment.state is PaymentState.AWAITING_CUSTOMER
    assert payment.redirect_url is not None
    [(cart_id, details)] = setup.gateway.pages
    assert cart_id == payment.cart_id
    assert details.callback_url == "https://shop.example/payments/v2/webhook"
    assert details.return_url == "https://shop.example/payments/v2/return"
    assert (await setup.service.get(payment.id)).state is PaymentState.AWAITING_CUSTOMER
    assert setup.results == [("applied", "api", "created", "awaiting_customer")]


async def test_a_create_wakes_the_relay_once_after_its_last_commit(setup: Setup) -> None:
    await setup.service.create(ORDER)
    assert setup.store.commits == 2  # the payment, then PayTabs' answer
    # one run delivers both events, and none runs between the two commits (during the
    # PayTabs call, on the request's path)
    assert setup.wakes == [2]
    assert [event.type for event in setup.store.outbox][:1] == ["payment.created"]


async def test_a_create_that_fails_after_its_first_commit_still_wakes_the_relay(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object) -> object:
        raise RuntimeError("a bug after the payment was stored")

    monkeypatch.setattr(setup.gateway, "open_page", broken)
    with pytest.raises(RuntimeError):
        await setup.service.create(ORDER)
    assert setup.store.commits == 1
    assert setup.wakes == [1]  # payment.created is not left for the periodic run


async def test_a_create_that_stores_nothing_does_not_wake_the_relay(setup: Setup) -> None:
    def refused() -> UnitOfWork:
        raise RuntimeError("the storage refused the first unit of work")

    wakes: list[int] = []
    service = PaymentService(replace(setup.service.deps, uow=refused), wake=lambda: wakes.append(0))
    with pytest.raises(RuntimeError):
        await service.create(ORDER)
    assert (setup.store.commits, wakes) == (0, [])


async def test_other_use_cases_wake_the_relay_after_each_commit(setup: Setup) -> None:
    payment = await setup.service.create(ORDER)
    paid = setup.gateway.result(payment, GatewayStatus.AUTHORIZED)
    await setup.service.apply_callback(paid, dedupe_key="k0", exact_key="x0")
    assert setup.wakes == [2, 3]


async def test_an_open_circuit_is_refused_before_anything_is_stored(setup: Setup) -> None:
    setup.gateway.closed[Operation.CREATE] = 12.5
    with pytest.raises(GatewayNotReached) as refused:
        setup.service.admit(Operation.CREATE)
    assert refused.value.retry_after == 12.5
    assert setup.service.unavailable_for(Operation.CREATE) == 12.5
    setup.service.admit(Operation.QUERY)  # another family is not affected
    assert (setup.store.commits, setup.wakes, setup.gateway.pages) == (0, [], [])


async def test_a_refused_page_fails_the_payment_and_records_it(setup: Setup) -> None:
    setup.gateway.refuse_pages = GatewayRejected("bad currency", code=210)
    payment = await setup.service.create(ORDER)
    assert payment.state is PaymentState.FAILED
    assert setup.results == [("applied", "api", "created", "failed")]


async def test_a_callback_is_recorded_after_its_commit_and_a_repeat_as_a_duplicate(
    setup: Setup,
) -> None:
    payment = await setup.service.create(ORDER)
    setup.results.clear()
    paid = setup.gateway.result(payment, GatewayStatus.AUTHORIZED)
    commits = setup.store.commits

    after, outcome = await setup.service.apply_callback(paid, dedupe_key="k1", exact_key="x1")
    assert after.state is PaymentState.COMPLETED
    assert outcome.changed
    assert setup.results == [("applied", "callback", "awaiting_customer", "completed")]
    assert setup.store.commits == commits + 1
    assert setup.wakes[-1] == commits + 1
    assert "payment.completed" in [event.type for event in setup.store.outbox]

    wakes = len(setup.wakes)
    _, again = await setup.service.apply_callback(paid, dedupe_key="k1", exact_key="x1")
    assert again.kind == "duplicate"
    assert setup.results[-1] == ("duplicate", "callback", "completed", "completed")
    # nothing stored, so nothing committed and the relay is not woken
    assert (setup.store.commits, len(setup.wakes)) == (commits + 1, wakes)


async def test_a_callback_nobody_owns_announces_nothing(setup: Setup) -> None:
    payment = await setup.service.create(ORDER)
    stranger = setup.gateway.result(payment, GatewayStatus.AUTHORIZED)
    stranger = replace(stranger, cart_id="cart-other", tran_ref="TST-other")
    before = (setup.store.commits, len(setup.wakes), len(setup.results))
    with pytest.raises(UnknownGatewayTransaction):
        await setup.service.apply_callback(stranger, dedupe_key="k2", exact_key="x2")
    assert (setup.store.commits, len(setup.wakes), len(setup.results)) == before


async def test_sync_applies_what_paytabs_holds_and_records_the_change(setup: Setup) -> None:
    payment = await setup.service.create(ORDER)
    setup.results.clear()
    setup.gateway.held[payment.cart_id] = [
        setup.gateway.result(payment, GatewayStatus.AUTHORIZED, source=ResultSource.QUERY)
    ]
    synced = await setup.service.sync(payment.id)
    assert synced.state is PaymentState.COMPLETED
    assert setup.results == [("applied", "query", "awaiting_customer", "completed")]
    assert (await setup.service.sync(payment.id)).state is PaymentState.COMPLETED
    assert len(setup.results) == 1  # a decided payment is not asked again, nothing recorded


async def test_a_callback_that_lands_while_paytabs_is_asked_is_the_callback_s_transition(
    setup: Setup,
) -> None:
    # PayTabs sends the callback as the shopper's browser returns: the return's query and the
    # callback race. The query that loses holds a duplicate; counting the change it saw as its
    # own counted every such payment twice, and as "settled by query" (an alert watches those).
    payment = await setup.service.create(ORDER)
    setup.results.clear()
    paid = setup.gateway.result(payment, GatewayStatus.AUTHORIZED)
    asked = setup.gateway.transactions

    async def callback_first(cart_id: str) -> Sequence[GatewayResult]:
        await setup.service.apply_callback(paid, dedupe_key="k1", exact_key="x1")
        return [replace(paid, source=ResultSource.QUERY)]

    setup.gateway.transactions = callback_first  # type: ignore[method-assign]
    try:
        synced = await setup.service.sync(payment.id)
    finally:
        setup.gateway.transactions = asked  # type: ignore[method-assign]
    assert synced.state is PaymentState.COMPLETED
    transitions = [r for r in setup.results if r[2] != r[3]]
    assert transitions == [("applied", "callback", "awaiting_customer", "completed")]
    assert ("applied", "query", "awaiting_customer", "completed") not in setup.results


async def test_a_refund_of_a_completed_payment_is_applied(setup: Setup) -> None:
    payment = await setup.service.create(ORDER)
    paid = setup.gateway.result(payment, GatewayStatus.AUTHORIZED)
    await setup.service.apply_callback(paid, dedupe_key="k3", exact_key="x3")
    refunded = await setup.service.refund(payment.id, Money.of("10.00", "SAR"))
    assert refunded.refunded == Money.of("10.00", "SAR")
    assert refunded.state is PaymentState.PARTIALLY_REFUNDED
    assert setup.wakes == [2, *range(3, setup.store.commits + 1)]  # the create's one, then each


async def test_reads_list_newest_first_and_say_when_a_payment_is_unknown(setup: Setup) -> None:
    first = await setup.service.create(ORDER)
    second = await setup.service.create(ORDER)
    page = await setup.service.list(limit=1)
    assert [p.id for p in page.payments] == [max(first.id, second.id)]
    assert page.next_after == max(first.id, second.id)
    with pytest.raises(PaymentNotFound):
        await setup.service.get("pay_missing")
