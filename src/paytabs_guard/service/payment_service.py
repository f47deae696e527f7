"""``PaymentService``: the use cases a driver (the HTTP routes, a script) calls, as one object.

Bootstrap builds it once around the ports (``PaymentDeps``) and two announcements: ``wake``
(the event relay: new outbox rows are waiting) and ``record`` (a payment-result metric). Both
happen only for what was stored: every unit of work the service opens wakes the relay from its
after-commit hook, and a callback's result is recorded from the hook of the unit of work that
stored it. A rollback announces nothing.

The breaker check is :meth:`admit`, called first by whoever wants the fast "unavailable" answer
before any storage (the routes do); :meth:`create` and :meth:`charge_saved_card` do not check
again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime

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
from paytabs_guard.service.gateway import ensure_available
from paytabs_guard.service.payments import (
    CreatePayment,
    IdempotentCreate,
    PaymentDeps,
    get_payment,
    start_payment,
)
from paytabs_guard.service.ports import UnitOfWork
from paytabs_guard.service.queries import PaymentPage, find_by_gateway_reference, list_payments
from paytabs_guard.service.results import apply_result, sync_payment
from paytabs_guard.service.saved_cards import (
    RecurringCharge,
    customer_cards,
    delete_saved_card,
    start_card_charge,
)

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
        """The breaker check: GatewayUnavailable (with ``retry_after``) when ``operation``'s
        circuit would turn the call away. Nothing is stored or sent either way."""
        ensure_available(self.deps.gateway, operation)

    def unavailable_for(self, operation: Operation) -> float | None:
        """Seconds until ``operation`` may be tried again; None when it may be tried now."""
        return self.deps.gateway.unavailable_for(operation)

    async def wait_available(self, operation: Operation, max_wait: float) -> bool:
        """Sleep (no CPU) until ``operation`` may be tried, at most ``max_wait`` seconds."""
        return await self.deps.gateway.wait_available(operation, max_wait)

    # ---- creates (call admit first) -----------------------------------------------------

    async def create(
        self, command: CreatePayment, *, idempotency: IdempotentCreate | None = None
    ) -> Payment:
        """A payment with its hosted page (``create_payment`` after :meth:`admit`)."""
        return self._created(await start_payment(self.deps, command, idempotency=idempotency))

    async def charge_saved_card(
        self, command: RecurringCharge, *, idempotency: IdempotentCreate | None = None
    ) -> Payment:
        """A recurring charge of a saved card (``charge_saved_card`` after :meth:`admit`)."""
        return self._created(await start_card_charge(self.deps, command, idempotency=idempotency))

    def _created(self, payment: Payment) -> Payment:
        # The create's last unit of work has committed by now.
        self._record("applied", ResultSource.API, "created", payment.state)
        return payment

    # ---- reads ----------------------------------------------------------------------------

    async def get(self, payment_id: str) -> Payment:
        """The payment as stored (PaymentNotFound for an unknown id)."""
        return await get_payment(self.deps, payment_id)

    async def list(
        self,
        *,
        states: Collection[PaymentState] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> PaymentPage:
        """Newest first, keyset-paginated after the payment id ``after``."""
        return await list_payments(
            self.deps,
            states=states,
            created_from=created_from,
            created_to=created_to,
            after=after,
            limit=limit,
        )

    async def find_by_gateway_reference(
        self, *, cart_id: str | None, tran_ref: str | None
    ) -> Payment | None:
        return await find_by_gateway_reference(self.deps, cart_id=cart_id, tran_ref=tran_ref)

    # ---- follow-ups -----------------------------------------------------------------------

    async def refund(self, payment_id: str, amount: Money) -> Payment:
        return await refund_payment(self.deps, payment_id, amount)

    async def capture(self, payment_id: str, amount: Money | None = None) -> Payment:
        """Capture an authorisation; all of it without ``amount``."""
        return await capture_payment(self.deps, payment_id, amount)

    async def void(self, payment_id: str) -> Payment:
        return await void_payment(self.deps, payment_id)

    async def release(self, payment_id: str) -> Payment:
        return await release_payment(self.deps, payment_id)

    # ---- what PayTabs says --------------------------------------------------------------

    async def sync(self, payment_id: str, *, known: Payment | None = None) -> Payment:
        """Ask PayTabs about an undecided payment and apply the answer (``sync_payment``).

        ``known`` is the payment as the caller read it moments ago (saves a read); a change
        from its state is recorded as a query result.
        """
        before = known if known is not None else await self.get(payment_id)
        after = await sync_payment(self.deps, payment_id)
        if after.state is not before.state:
            self._record("applied", ResultSource.QUERY, before.state, after.state)
        return after

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

    async def delete_card(self, card_id: str) -> SavedCard:
        return await delete_saved_card(self.deps, card_id)
