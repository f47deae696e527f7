"""The steps every payment use case is made of: its collaborators (``PaymentDeps``), load,
change and commit under the row lock, claim an idempotency key with a new payment's insert.

A database transaction is never held across a gateway call: each use case loads, decides and
commits in short units of work around the call.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from paytabs_guard.domain import (
    Money,
    Payment,
    ResultSource,
    TranType,
)
from paytabs_guard.service.gateway import (
    Customer,
    Gateway,
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayRejected,
    PageDetails,
)
from paytabs_guard.service.gateway_calls import GatewayCall, with_calls
from paytabs_guard.service.ports import (
    ClaimStatus,
    KeyTaken,
    StaleVersion,
    StoredResponse,
    UnitOfWork,
    UnitOfWorkFactory,
)

Clock = Callable[[], datetime]


class PaymentNotFound(LookupError):
    def __init__(self, payment_id: str) -> None:
        super().__init__(f"no payment {payment_id!r}")
        self.payment_id = payment_id


class UnknownGatewayTransaction(LookupError):
    """A gateway result for a cart/tran_ref we do not know (yet): the sender should retry."""


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    """Our own addresses PayTabs is given, built once by bootstrap from PUBLIC_BASE_URL (the
    routes behind them are the HTTP layer's business, not the use cases')."""

    callback_url: str
    """Where PayTabs posts results, server to server."""
    return_url: str
    """Where the customer's browser comes back from the hosted page."""


@dataclass(frozen=True, slots=True)
class PaymentDeps:
    """The collaborators of the payment use cases, built once by bootstrap."""

    uow: UnitOfWorkFactory
    gateway: Gateway
    clock: Clock
    profile_id: int
    urls: ServiceUrls
    page_ttl: timedelta = timedelta(minutes=20)
    send_window: timedelta = timedelta(seconds=90)
    """How long after a create starts PayTabs may still receive its request (the last retry
    starts by the operation deadline and runs to the call timeout): PayTabs counts its page's
    TTL from then."""
    currency_conversion: bool = False
    """PayTabs may charge in another currency (PAYTABS_CURRENCY_CONVERSION)."""
    new_id: Callable[[], str] = field(default=lambda: f"pay_{secrets.token_hex(12)}")
    new_card_id: Callable[[], str] = field(default=lambda: f"card_{secrets.token_hex(12)}")
    page_opened: Callable[[datetime], object] = field(default=lambda _deadline: None)
    """Told each deadline of a page that starts waiting (it wakes the page-expiry sleeper)."""

    @property
    def callback_url(self) -> str:
        return self.urls.callback_url

    def page_details(
        self, customer: Customer | None, language: str | None = None, *, save_card: bool = False
    ) -> PageDetails:
        return PageDetails(
            callback_url=self.urls.callback_url,
            return_url=self.urls.return_url,
            customer=customer,
            language=language,
            ttl_minutes=int(self.page_ttl.total_seconds() // 60),
            save_card=save_card,
        )


@dataclass(frozen=True, slots=True)
class CreatePayment:
    amount: Money
    description: str
    tran_type: TranType = TranType.SALE
    customer: Customer | None = None
    return_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    language: str | None = None
    """The hosted page's language (PayTabs' paypage_lang: en or ar); None = PayTabs decides."""
    save_card_for: str | None = None
    """The merchant's customer id to save the card for (PayTabs tokenises it); None: don't."""


@dataclass(slots=True)
class IdempotentCreate:
    """An ``Idempotency-Key`` carried into the create's own transactions: the key is claimed in
    the transaction that inserts the payment, and ``answer(payment)`` (the response to replay)
    is stored in the one that records PayTabs' answer. ``claimed``/``completed`` say how far it
    got, so the caller knows whether to release the key when something fails."""

    scope: str
    key: str
    fingerprint: str
    ttl_seconds: int
    answer: Callable[[Payment], StoredResponse]
    on_claimed: Callable[[], object] = lambda: None
    claimed: bool = False
    completed: bool = False
    payment_id: str | None = None  # the payment inserted with the claim


async def load_payment(uow: UnitOfWork, payment_id: str, *, for_update: bool = False) -> Payment:
    payment = await uow.payments.get(payment_id, for_update=for_update)
    if payment is None:
        raise PaymentNotFound(payment_id)
    return payment


async def change_payment(
    deps: PaymentDeps,
    payment_id: str,
    change: Callable[[Payment, datetime], object],
    idempotency: IdempotentCreate | None = None,
) -> Payment:
    """Lock the payment, apply one change, commit (the outbox rows go with it, and the
    idempotency answer when given)."""
    async with deps.uow() as uow:
        payment = await load_payment(uow, payment_id, for_update=True)
        change(payment, deps.clock())
        await store_answer(deps, uow, payment, idempotency)
        await uow.commit()
    mark_answered(idempotency)
    return payment


async def change_saved(
    deps: PaymentDeps,
    payment: Payment,
    change: Callable[[Payment, datetime], object],
    idempotency: IdempotentCreate | None,
) -> Payment:
    """:func:`change_payment` for a payment this request saved itself a moment ago: written
    behind its version check without reading it again. Should another transaction have saved it
    since (reconciliation, a callback), it is reloaded under its lock and changed there."""
    try:
        async with deps.uow() as uow:
            uow.payments.add(payment)
            change(payment, deps.clock())
            await store_answer(deps, uow, payment, idempotency)
            await uow.commit()
    except StaleVersion:
        return await change_payment(deps, payment.id, change, idempotency)
    mark_answered(idempotency)
    return payment


async def store_answer(
    deps: PaymentDeps, uow: UnitOfWork, payment: Payment, idempotency: IdempotentCreate | None
) -> None:
    """Store the response to replay for the create's key, in the unit of work that stores
    the state it describes."""
    if idempotency is not None:
        response = idempotency.answer(payment)
        await uow.idempotency.complete(
            idempotency.scope, idempotency.key, response, now=deps.clock()
        )


def mark_answered(idempotency: IdempotentCreate | None) -> None:
    """The key's answer is committed: a failure from here on must not release the key."""
    if idempotency is not None:
        idempotency.completed = True


async def get_payment(deps: PaymentDeps, payment_id: str) -> Payment:
    async with deps.uow() as uow:
        return await load_payment(uow, payment_id)


def new_payment(
    deps: PaymentDeps, command: CreatePayment, *, at: datetime, saved_card_id: str | None
) -> Payment:
    """A new payment for ``command``; its first cart id is its id."""
    payment_id = deps.new_id()
    return Payment.create(
        id=payment_id,
        cart_id=payment_id,
        profile_id=deps.profile_id,
        amount=command.amount,
        tran_type=command.tran_type,
        description=command.description,
        at=at,
        return_url=command.return_url,
        metadata=command.metadata,
        saved_card_id=saved_card_id,
    )


async def insert_claimed(
    deps: PaymentDeps,
    payment: Payment,
    idempotency: IdempotentCreate | None,
    prepare: Callable[[UnitOfWork], Awaitable[None]],
    *,
    prepare_checks: bool = True,
) -> None:
    """The first transaction of a create: the idempotency claim (KeyTaken when the key is not
    this request's), what ``prepare`` writes or checks (raising rolls the claim back) and the
    new payment, committed together.

    When ``prepare`` only writes (``prepare_checks=False``), the claim may travel with the
    commit (on PostgreSQL the whole transaction is then one statement). When it checks
    something, the claim comes first: a repeat of a request must hear the first answer even
    if the check would now fail (a saved card deleted since, say)."""
    async with deps.uow() as uow:
        if idempotency is not None:
            claim_args = (idempotency.scope, idempotency.key, idempotency.fingerprint)
            now, ttl = deps.clock(), idempotency.ttl_seconds
            if prepare_checks:
                claim = await uow.idempotency.claim(*claim_args, now=now, ttl_seconds=ttl)
                if claim.status is not ClaimStatus.NEW:
                    raise KeyTaken(claim)
            else:
                await uow.idempotency.claim_with_commit(*claim_args, now=now, ttl_seconds=ttl)
        await prepare(uow)
        uow.payments.add(payment)
        await uow.commit()
    if idempotency is not None:
        idempotency.claimed = True
        idempotency.payment_id = payment.id
        idempotency.on_claimed()


UNANSWERED = (GatewayRejected, GatewayNotReached, GatewayOutcomeUnknown)
"""What a payment's first send (page or recurring charge) can end in besides an answer."""


async def save_unanswered(
    deps: PaymentDeps,
    payment: Payment,
    error: GatewayRejected | GatewayNotReached | GatewayOutcomeUnknown,
    idempotency: IdempotentCreate | None,
    *,
    calls: Sequence[GatewayCall] = (),
    sent: str = "the page",
    unanswered: str = "no answer to the create-page request",
) -> Payment:
    """Save what a first send without an answer leaves: failed when PayTabs refused it, UNKNOWN
    when the answer was lost (reconciliation resolves it). When nothing was sent, the payment
    is failed without keeping an answer for the key, and ``error`` is raised again. ``calls``:
    the attempts made, for the history entry; ``sent``, what was asked for (the page, a
    recurring charge), and ``unanswered`` the history's words when its answer was lost."""
    if isinstance(error, GatewayRejected):
        reason = with_calls(f"PayTabs refused {sent}: {error.message}", calls)
        code = "" if error.code is None else str(error.code)
        return await change_saved(
            deps,
            payment,
            lambda p, at: p.initiation_failed(reason, at=at, response_code=code),
            idempotency,
        )
    if isinstance(error, GatewayNotReached):
        if payment.abandoned_cart_ids:
            # Earlier attempts reached PayTabs (their pages' addresses were lost), so "nothing
            # was sent" would be untrue, and a retry with the key would make a second
            # payment. It ends as the last attempt does: failed, kept as the key's answer.
            return await change_saved(deps, payment, _pages_lost, idempotency)
        await change_saved(deps, payment, _not_sent, None)
        error.payment_id = payment.id  # the merchant sees its events: the 503 names it
        raise error
    lost = with_calls(unanswered, calls)
    return await change_saved(
        deps, payment, lambda p, at: p.initiation_ambiguous(at=at, reason=lost), idempotency
    )


def _not_sent(payment: Payment, at: datetime) -> object:
    # Not "nothing was sent": PayTabs may answer 503 or 429 after making a page. That page
    # is never handed out (nobody can pay it), which is what matters here.
    return payment.initiation_failed(
        "PayTabs was unavailable (not reached, or it turned the request away); no page was "
        "handed out and nothing was charged",
        at=at,
    )


def _pages_lost(payment: Payment, at: datetime) -> object:
    reason = (
        f"PayTabs was unavailable for attempt {len(payment.abandoned_cart_ids) + 1}; the "
        "pages of the earlier attempts were lost with their answers and cannot be paid"
    )
    payment.initiation_ambiguous(at=at, reason=reason)
    return payment.unknown_resolved_no_record(at=at, source=ResultSource.API)
