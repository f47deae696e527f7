"""Payments: ``PaymentService``, the use cases a driver (the HTTP routes, a script) calls, and
the create flow itself (the hosted page), so a create reads top to bottom in this file.

Bootstrap builds the service once around the ports (``PaymentDeps``) and two announcements:
``wake`` (the event relay: new outbox rows are waiting) and ``record`` (a payment-result
metric). Both happen only for what was stored: every unit of work the service opens wakes the
relay from its after-commit hook, and a callback's result is recorded from the hook of the unit
of work that stored it. A rollback announces nothing.

The breaker check is :meth:`PaymentService.admit`, called first by whoever wants the fast
"unavailable" answer before any work (the routes do); it holds nothing. The admission that
counts is :meth:`PaymentService.reserve`, taken right before the create stores anything and
held until its PayTabs call: in half-open it holds the trial slot, so a create the breaker will
not let through is turned away with nothing stored, however many arrive at once.
:meth:`PaymentService.create` and :meth:`PaymentService.charge_saved_card` do neither (the
routes wrap them); the plain functions (``create_payment``, ``charge_saved_card``) reserve
themselves.

A database transaction is never held across a gateway call (``payment_steps``). Every gateway
result, whatever its source, reaches the payment through ``Payment.apply_gateway_result``
inside ``results.apply_result``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Unpack

from paytabs_guard.domain import (
    GatewayResult,
    Money,
    Operation,
    Outcome,
    Payment,
    PaymentState,
    ResultSource,
)
from paytabs_guard.domain.cards import SavedCard
from paytabs_guard.service.follow_ups import (
    capture_payment,
    refund_payment,
    release_payment,
    void_payment,
)
from paytabs_guard.service.gateway import (
    Customer,
    PageOpened,
    ensure_available,
)
from paytabs_guard.service.gateway_calls import GatewayCall, captured, with_calls
from paytabs_guard.service.payment_steps import (
    UNANSWERED,
    Clock,
    CreatePayment,
    IdempotentCreate,
    PaymentDeps,
    PaymentNotFound,
    ServiceUrls,
    UnknownGatewayTransaction,
    change_payment,
    change_saved,
    get_payment,
    insert_claimed,
    load_payment,
    mark_answered,
    new_payment,
    save_unanswered,
    store_answer,
)
from paytabs_guard.service.ports import GatewayReferenceTaken, KeyTaken, UnitOfWork
from paytabs_guard.service.queries import (
    PaymentFilters,
    PaymentListPage,
    find_by_gateway_reference,
    list_payments,
)
from paytabs_guard.service.results import apply_result, no_record_before, sync_payment
from paytabs_guard.service.saved_cards import (
    RecurringCharge,
    check_chargeable,
    customer_cards,
    delete_saved_card,
    start_card_charge,
)

__all__ = [  # the steps' names, importable from here as before
    "Clock",
    "CreatePayment",
    "IdempotentCreate",
    "KeyTaken",
    "PaymentDeps",
    "PaymentNotFound",
    "PaymentService",
    "ServiceUrls",
    "UnknownGatewayTransaction",
    "create_payment",
    "get_payment",
    "key_lease",
    "start_payment",
]

#: How many attempts (cart ids) one payment may use when page URLs are lost to ambiguity.
MAX_PAGE_ATTEMPTS = 5


def key_lease(send_window: timedelta) -> timedelta:
    """How long an Idempotency-Key claimed in flight stays its request's before a retry hears
    that the request died (``interrupted``; never taken over): past the longest a create runs.
    A page attempt sends for up to ``send_window`` and may then query for as long again to
    resolve a lost answer; a create starts another attempt only when it ends within this
    lease (:func:`_open_page`). With a shorter lease, a retry took over a create still
    running, made a second payment, and the first one's answer then overwrote the second's."""
    return max(timedelta(seconds=120), 2 * send_window + timedelta(seconds=30))


def _time_for_another_attempt(deps: PaymentDeps, started: datetime) -> bool:
    """Whether one more page attempt, at its longest, ends before the key's lease does."""
    attempt = 2 * deps.send_window
    return deps.clock() - started + attempt <= key_lease(deps.send_window)


# ---- create -------------------------------------------------------------------------------------


async def create_payment(
    deps: PaymentDeps, command: CreatePayment, *, idempotency: IdempotentCreate | None = None
) -> Payment:
    """A payment with its hosted page; fails fast (GatewayNotReached) when the circuit is open.

    Two transactions around the PayTabs call: the payment (with the idempotency claim, raising
    KeyTaken when the key is not this request's), then PayTabs' answer (with the response to
    replay for the key).

    Returns the payment in AWAITING_CUSTOMER (page ready), FAILED (PayTabs refused the request)
    or UNKNOWN (no answer; reconciliation resolves it). GatewayNotReached means nothing reached
    PayTabs; the payment, if one was started, is marked failed and the caller may try again.
    """
    with deps.gateway.reserve(Operation.CREATE):
        return await start_payment(deps, command, idempotency=idempotency)


async def start_payment(
    deps: PaymentDeps, command: CreatePayment, *, idempotency: IdempotentCreate | None = None
) -> Payment:
    """:func:`create_payment` without the breaker's admission, for a caller that took it
    (``PaymentService.reserve``); without one, a circuit that will not let the call through
    fails it at the gateway call instead, after the payment was stored."""
    now = deps.clock()
    card_id = deps.new_card_id() if command.save_card_for is not None else None
    payment = new_payment(deps, command, at=now, saved_card_id=card_id)
    payment_id = payment.id
    # Until PayTabs answers, the page may have been opened as late as the send window allows.
    payment.mark_initiating(at=now, expires_at=now + deps.send_window + deps.page_ttl)

    async def save_card(uow: UnitOfWork) -> None:
        if card_id is not None and command.save_card_for is not None:
            card = SavedCard(
                id=card_id, customer_id=command.save_card_for, payment_id=payment_id, created_at=now
            )
            await uow.cards.add(card)

    await insert_claimed(deps, payment, idempotency, save_card, prepare_checks=False)
    payment = await _open_page(
        deps, payment, command.customer, idempotency, command.language, started=now
    )
    if payment.state is PaymentState.AWAITING_CUSTOMER and payment.expires_at is not None:
        deps.page_opened(payment.expires_at)
    return payment


async def _open_page(
    deps: PaymentDeps,
    payment: Payment,
    customer: Customer | None,
    idempotency: IdempotentCreate | None,
    language: str | None,
    *,
    started: datetime,
) -> Payment:
    base_cart_id = payment.cart_id
    for attempt in range(1, MAX_PAGE_ATTEMPTS + 1):
        details = deps.page_details(customer, language, save_card=payment.saved_card_id is not None)
        with captured() as calls:  # for the history: how PayTabs answered, attempt by attempt
            try:
                opened = await deps.gateway.open_page(payment, details)
            except UNANSWERED as error:
                return await save_unanswered(deps, payment, error, idempotency, calls=calls)

        if opened.found is None and opened.redirect_url is not None:
            ready = _page_ready(opened, deps.page_ttl, calls)
            try:
                return await change_saved(deps, payment, ready, idempotency)
            except GatewayReferenceTaken:
                await _refuse_taken_reference(deps, payment.id, opened.tran_ref)
                raise GatewayReferenceTaken(opened.tran_ref, payment.id) from None
        found = opened.found
        # The answer was lost; a query found what PayTabs holds for this cart.
        async with deps.uow() as uow:
            payment = await load_payment(uow, payment.id, for_update=True)
            now = deps.clock()
            reason = with_calls("no answer to the create-page request", calls)
            payment.initiation_ambiguous(at=now, reason=reason)
            orphan = found is None or found.status is None
            another = attempt < MAX_PAGE_ATTEMPTS and _time_for_another_attempt(deps, started)
            if orphan and opened.redirect_url is None and another:
                payment.new_attempt(f"{base_cart_id}-{attempt + 1}", at=now)
                await uow.commit()
                continue
            if found is not None and orphan and opened.redirect_url is None:
                # The last attempt, and PayTabs again holds only a page whose address was lost
                # with its answer: nobody can pay it, so no page is waiting for the customer
                # (moved to awaiting_customer, the create answered 201 without a redirect_url).
                payment.unknown_resolved_no_record(at=now, source=ResultSource.API)
            elif found is not None:
                payment.apply_gateway_result(
                    found, at=now, currency_conversion=deps.currency_conversion
                )
            await store_answer(deps, uow, payment, idempotency)
            await uow.commit()
        mark_answered(idempotency)
        return payment
    raise AssertionError("unreachable: the loop returns on its last attempt")


async def _refuse_taken_reference(deps: PaymentDeps, payment_id: str, tran_ref: str) -> None:
    """PayTabs opened the page under a transaction reference another payment holds: the page
    is not handed out (nobody can pay it), and the payment fails without an answer kept for
    its key, like a create that sent nothing: a retry is a new payment with a new page."""
    reason = (
        f"PayTabs opened the page as transaction {tran_ref}, which another payment already "
        "holds; the page was not handed out"
    )
    await change_payment(deps, payment_id, lambda p, at: p.initiation_failed(reason, at=at), None)


def _page_ready(
    opened: PageOpened, ttl: timedelta, calls: Sequence[GatewayCall]
) -> Callable[[Payment, datetime], object]:
    def ready(payment: Payment, at: datetime) -> object:
        # ``at`` is after PayTabs answered, so after it opened the page: never earlier than
        # PayTabs' deadline. (The deadline set before the call was counted from its start:
        # a create that took 3 s expired a page PayTabs kept open 3 s more, and the customer
        # who paid in those seconds was charged for an expired payment.) A payment submitted
        # in the page's last second is found by the query the expiry makes first.
        expires_at = at + ttl
        return payment.page_created(
            opened.tran_ref,
            expires_at,
            at=at,
            redirect_url=opened.redirect_url,
            reason=with_calls("hosted page created", calls),
        )

    return ready


# ---- the service ------------------------------------------------------------------------------

#: Told (kind, source, previous state, state) of each result held against a payment.
ResultRecorder = Callable[[str, str, str, str], object]


def _nothing(*_args: object) -> None:
    return None


class PaymentService:
    """The payment use cases over one set of ports; see the module docstring."""

    def __init__(
        self,
        deps: PaymentDeps,
        *,
        wake: Callable[[], object] = _nothing,
        record: ResultRecorder = _nothing,
    ) -> None:
        self._open = deps.uow
        self._wake = wake
        self._record = record
        #: The ports as the use cases see them: every unit of work wakes the relay on commit.
        self.deps = replace(deps, uow=self._unit_of_work)

    def over(self, deps: PaymentDeps) -> PaymentService:
        """The same service (same announcements) over other ports."""
        return PaymentService(deps, wake=self._wake, record=self._record)

    def _unit_of_work(self) -> UnitOfWork:
        uow = self._open()
        uow.after_commit(self._wake)
        return uow

    def now(self) -> datetime:
        """The use cases' clock."""
        return self.deps.clock()

    # ---- the breaker --------------------------------------------------------------------

    def admit(self, operation: Operation) -> None:
        """The breaker check: GatewayNotReached (with ``retry_after``) when ``operation``'s
        circuit would turn the call away. Nothing is stored or sent either way."""
        ensure_available(self.deps.gateway, operation)

    def reserve(self, operation: Operation) -> AbstractContextManager[object]:
        """The breaker's admission for the work a ``with`` block does, taken now: the next
        ``operation`` call of this task inside the block goes through on it (in half-open, on
        the trial slot taken now; given back if unused). GatewayTurnedAway, with nothing
        stored or sent, when the circuit would turn the call away (``Gateway.reserve``)."""
        return self.deps.gateway.reserve(operation)

    def unavailable_for(self, operation: Operation) -> float | None:
        """Seconds until ``operation`` may be tried again; None when it may be tried now."""
        return self.deps.gateway.unavailable_for(operation)

    async def wait_available(self, operation: Operation, max_wait: float) -> bool:
        """Sleep (no CPU) until ``operation`` may be tried, at most ``max_wait`` seconds."""
        return await self.deps.gateway.wait_available(operation, max_wait)

    # ---- creates (inside reserve) ------------------------------------------------------

    async def create(
        self, command: CreatePayment, *, idempotency: IdempotentCreate | None = None
    ) -> Payment:
        """A payment with its hosted page (``create_payment`` inside :meth:`reserve`)."""
        deps, wake = self._waking_once()
        try:
            return self._created(await start_payment(deps, command, idempotency=idempotency))
        finally:
            wake()

    async def charge_saved_card(
        self, command: RecurringCharge, *, idempotency: IdempotentCreate | None = None
    ) -> Payment:
        """A recurring charge of a saved card (``charge_saved_card`` inside :meth:`reserve`)."""
        deps, wake = self._waking_once()
        try:
            return self._created(await start_card_charge(deps, command, idempotency=idempotency))
        finally:
            wake()

    def _waking_once(self) -> tuple[PaymentDeps, Callable[[], None]]:
        """Ports whose commits wake the relay once, when the use case ends, and that wake.

        A create commits twice, a PayTabs call apart. Woken by the first commit, the relay
        ran in the middle of the create (its claim and deliveries on the same event loop and
        database as the create's PayTabs call and second commit) and then again for the
        second: two runs per create at low traffic, one of them on the request's path. Held
        to the end, the first event waits at most the PayTabs call for its delivery (the
        relay's periodic run bounds even that), and one run takes both.
        """
        committed = False

        def note() -> None:
            nonlocal committed
            committed = True

        def uow() -> UnitOfWork:
            opened = self._open()
            opened.after_commit(note)
            return opened

        def wake() -> None:
            if committed:
                self._wake()

        return replace(self.deps, uow=uow), wake

    def _created(self, payment: Payment) -> Payment:
        # The create's last unit of work has committed by now.
        self._record("applied", ResultSource.API, "created", payment.state)
        return payment

    # ---- reads ----------------------------------------------------------------------------

    async def get(self, payment_id: str) -> Payment:
        """The payment as stored (PaymentNotFound for an unknown id)."""
        return await get_payment(self.deps, payment_id)

    async def list(self, **filters: Unpack[PaymentFilters]) -> PaymentListPage:
        """Newest first, keyset-paginated after the payment id ``after``."""
        return await list_payments(self.deps, **filters)

    async def find_by_gateway_reference(
        self, *, cart_id: str | None, tran_ref: str | None
    ) -> Payment | None:
        return await find_by_gateway_reference(self.deps, cart_id=cart_id, tran_ref=tran_ref)

    # ---- follow-ups -----------------------------------------------------------------------

    async def refund(self, payment_id: str, amount: Money) -> Payment:
        return await refund_payment(self.deps, payment_id, amount, on_outcome=self._answered)

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        """Capture an authorisation; all of it without ``amount``."""
        return await capture_payment(self.deps, payment_id, amount, on_outcome=self._answered)

    async def void(self, payment_id: str) -> Payment:
        return await void_payment(self.deps, payment_id, on_outcome=self._answered)

    async def release(self, payment_id: str) -> Payment:
        return await release_payment(self.deps, payment_id, on_outcome=self._answered)

    def _answered(self, outcome: Outcome) -> None:
        # PayTabs' answer to our own follow-up: completed -> refunded, authorized -> voided...
        # are transitions like any other and count in the metrics as the API's.
        self._record(outcome.kind, ResultSource.API, outcome.previous_state, outcome.state)

    # ---- what PayTabs says --------------------------------------------------------------

    def no_record_before(self, payment: Payment) -> datetime | None:
        """For a payment whose request may still be under way or on its way to PayTabs, when
        a sync stops waiting for it (``results.no_record_before``)."""
        return no_record_before(self.deps, payment)

    async def sync(self, payment_id: str) -> Payment:
        """Ask PayTabs about an undecided payment and apply the answer (``sync_payment``);
        what this query itself did is recorded as query results (a callback that got there
        first leaves this query a duplicate)."""

        def recorded(outcome: Outcome) -> None:
            self._record(outcome.kind, ResultSource.QUERY, outcome.previous_state, outcome.state)

        return await sync_payment(
            self.deps, payment_id, on_outcome=recorded, source=ResultSource.QUERY
        )

    async def apply_callback(
        self, result: GatewayResult, *, dedupe_key: str, exact_key: str
    ) -> tuple[Payment, Outcome]:
        """A verified PayTabs callback, held against its payment (``apply_result``): deduped
        by ``dedupe_key``, an exact repeat of a quarantined delivery by ``exact_key``."""

        def recorded(outcome: Outcome) -> None:
            self._record(outcome.kind, ResultSource.CALLBACK, outcome.previous_state, outcome.state)

        return await apply_result(
            self.deps, result, dedupe_key=dedupe_key, exact_key=exact_key, on_outcome=recorded
        )

    # ---- saved cards ----------------------------------------------------------------------

    async def customer_cards(self, customer_id: str) -> Sequence[SavedCard]:
        return await customer_cards(self.deps, customer_id)

    async def check_chargeable(self, card_id: str) -> None:
        """A ``SavedCardError`` when the card cannot be charged now (a read; nothing stored):
        why a recurring charge the breaker turns away would fail anyway."""
        await check_chargeable(self.deps, card_id)

    async def delete_card(self, card_id: str) -> SavedCard:
        return await delete_saved_card(self.deps, card_id)
