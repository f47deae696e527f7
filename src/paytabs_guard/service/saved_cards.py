"""Saved cards: charge one (PayTabs' recurring sale), list a customer's, delete one.

A recurring charge is a create without a page: the same idempotency claim in the transaction
that inserts the payment, the same breaker and retry (PayTabs' token family), the same rule
that an ambiguous answer is resolved by querying the cart before anything is re-sent, and the
same states and events to a final one (``initiating`` → the charge's ``tran_ref`` adopted →
``completed`` or ``failed``; ``unknown`` when PayTabs' answer stays unclear, settled by
reconciliation like any create).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from paytabs_guard.domain import GatewayResult, Money, Operation, Payment, PaymentState
from paytabs_guard.domain.cards import SavedCard
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayRejected,
)
from paytabs_guard.service.gateway_calls import GatewayCall, captured, with_calls
from paytabs_guard.service.payment_steps import (
    UNANSWERED,
    CreatePayment,
    IdempotentCreate,
    PaymentDeps,
    change_saved,
    insert_claimed,
    new_payment,
    save_unanswered,
)
from paytabs_guard.service.ports import UnitOfWork

log = logging.getLogger(__name__)

#: The breaker (operation family) of every token call: recurring charges and token deletes.
TOKEN_OPERATION = Operation.TOKEN


class SavedCardError(Exception):
    """A saved card cannot be used as asked; ``code``, ``title`` and ``status`` say how."""

    code = "saved_card_error"
    title = "Saved card error"
    status = 409

    def __init__(self, card_id: str, detail: str, payment_id: str | None = None) -> None:
        super().__init__(detail)
        self.card_id = card_id
        #: The charge stored as failed, when one went out before the card was refused.
        self.payment_id = payment_id


class SavedCardNotFound(SavedCardError):
    code = "saved_card_not_found"
    title = "Saved card not found"
    status = 404

    def __init__(self, card_id: str) -> None:
        super().__init__(
            card_id,
            f"There is no saved card {card_id!r}; list the customer's cards with "
            "GET /payments/v2/customers/{customer_id}/cards.",
        )


class SavedCardDeleted(SavedCardError):
    code = "saved_card_deleted"
    title = "Saved card deleted"

    def __init__(self, card: SavedCard, deleted_at: datetime, *, charge: str | None = None) -> None:
        # ``charge``: the payment of a charge already on its way when the card was deleted;
        # PayTabs refused the deleted token, and the refusal is kept as that failed payment.
        when = (
            f"was deleted at {deleted_at.isoformat()}"
            if charge is None
            else f"was deleted at {deleted_at.isoformat()} while this charge was on its way: "
            f"PayTabs refused its token and charged nothing (kept as payment {charge}, failed)"
        )
        super().__init__(
            card.id,
            f"Saved card {card.id} {when} and cannot be charged; ask the customer to pay on a "
            "hosted page (save_card: true saves a new one).",
            payment_id=charge,
        )


class SavedCardInvalid(SavedCardError):
    code = "saved_card_invalid"
    title = "Saved card no longer valid"

    def __init__(self, card: SavedCard, *, charge: str | None = None) -> None:
        # ``charge``: the payment of the charge PayTabs refused the token on (kept as failed).
        when = (
            "PayTabs refused its token as unknown on an earlier charge"
            if charge is None
            else "PayTabs refused its token as unknown and charged nothing (kept as payment "
            f"{charge}, failed)"
        )
        super().__init__(
            card.id,
            f"Saved card {card.id} is no longer valid at PayTabs and can no longer be charged: "
            f"{when}. The token expired, was deleted at PayTabs, or the profile changed; no "
            "retry can help. Ask the customer to pay on a hosted page (save_card: true saves "
            "a new one).",
            payment_id=charge,
        )


class SavedCardNeverSaved(SavedCardError):
    code = "saved_card_never_saved"
    title = "Saved card never saved"

    def __init__(self, card: SavedCard, state: str) -> None:
        super().__init__(
            card.id,
            f"Saved card {card.id} will never have a PayTabs token: payment {card.payment_id} "
            f"that was to save it ended {state}. Ask the customer to pay on a hosted page "
            "(save_card: true saves a new one).",
        )


class SavedCardNotReady(SavedCardError):
    code = "saved_card_not_ready"
    title = "Saved card not ready"

    def __init__(self, card: SavedCard) -> None:
        super().__init__(
            card.id,
            f"Saved card {card.id} has no PayTabs token yet: payment {card.payment_id} that "
            "saves it has not been paid (or PayTabs issued no token). Charge it once that "
            "payment is completed.",
        )


@dataclass(frozen=True, slots=True)
class _Chargeable:
    """What PayTabs needs to charge a saved card (kept out of ``repr``: a credential)."""

    token: str = field(repr=False)
    tran_ref: str


def usable(card: SavedCard | None, card_id: str) -> _Chargeable:
    """What charges ``card`` if it can be charged; else the error that says why not."""
    if card is None:
        raise SavedCardNotFound(card_id)
    if card.deleted_at is not None:
        raise SavedCardDeleted(card, card.deleted_at)
    if card.refused:
        raise SavedCardInvalid(card)
    if card.token is None or card.tran_ref is None:
        raise SavedCardNotReady(card)
    return _Chargeable(card.token, card.tran_ref)


#: How a payment that was to save a card can end without PayTabs issuing its token.
_UNPAID_ENDS = frozenset({PaymentState.FAILED, PaymentState.CANCELLED, PaymentState.EXPIRED})


async def chargeable(uow: UnitOfWork, card_id: str) -> _Chargeable:
    """:func:`usable`, told apart when the card is not ready: a saving payment that ended
    unpaid will never bring a token, while one still under way may."""
    card = await uow.cards.get(card_id)
    if card is not None and card.deleted_at is None and card.token is None:
        saving = await uow.payments.get(card.payment_id)
        if saving is not None and saving.state in _UNPAID_ENDS:
            raise SavedCardNeverSaved(card, saving.state.value)
    return usable(card, card_id)


async def check_chargeable(deps: PaymentDeps, card_id: str) -> None:
    """A ``SavedCardError`` when ``card_id`` cannot be charged now (a read; nothing stored)."""
    async with deps.uow() as uow:
        await chargeable(uow, card_id)


@dataclass(frozen=True, slots=True)
class RecurringCharge:
    card_id: str
    amount: Money
    description: str
    metadata: dict[str, str] = field(default_factory=dict)


async def charge_saved_card(
    deps: PaymentDeps, command: RecurringCharge, *, idempotency: IdempotentCreate | None = None
) -> Payment:
    """Charge a saved card once. Returns the payment COMPLETED, FAILED (declined, or refused
    by PayTabs) or UNKNOWN (no clear answer; reconciliation settles it). Raises a
    ``SavedCardError`` before anything is stored or sent when the card cannot be charged, and
    GatewayNotReached when nothing could be sent (the payment, if started, is marked failed).
    """
    with deps.gateway.reserve(TOKEN_OPERATION):
        return await start_card_charge(deps, command, idempotency=idempotency)


async def start_card_charge(
    deps: PaymentDeps, command: RecurringCharge, *, idempotency: IdempotentCreate | None = None
) -> Payment:
    """:func:`charge_saved_card` without the breaker's admission (``PaymentService.reserve``
    took it)."""
    now = deps.clock()
    order = CreatePayment(command.amount, command.description, metadata=command.metadata)
    payment = new_payment(deps, order, at=now, saved_card_id=command.card_id)
    payment.mark_initiating(at=now, reason="recurring charge about to be sent")
    cards: list[_Chargeable] = []

    async def check_card(uow: UnitOfWork) -> None:
        # In the claim's transaction: a replay of a finished charge is answered from its key
        # even if the card was deleted since; a refused card leaves neither key nor payment.
        cards.append(await chargeable(uow, command.card_id))

    await insert_claimed(deps, payment, idempotency, check_card)
    card = cards[0]
    with captured() as calls:  # for the history: how PayTabs answered, attempt by attempt
        try:
            result = await deps.gateway.charge_token(
                payment,
                token=card.token,
                token_tran_ref=card.tran_ref,
                callback_url=deps.callback_url,
            )
        except UNANSWERED as error:
            if isinstance(error, GatewayRejected):
                await _unless_deleted_meanwhile(deps, payment, error, calls)
                await _unless_token_refused(deps, payment, error, calls)
            return await save_unanswered(
                deps,
                payment,
                error,
                idempotency,
                calls=calls,
                sent="the recurring charge",
                unanswered="no answer to the recurring charge",
            )
    answered = _answered(result, deps, with_calls("recurring charge answered by PayTabs", calls))
    return await change_saved(deps, payment, answered, idempotency)


async def _unless_deleted_meanwhile(
    deps: PaymentDeps, payment: Payment, error: GatewayRejected, calls: Sequence[GatewayCall]
) -> None:
    """Raise ``SavedCardDeleted`` (the failed charge saved, its key left to the caller) when
    the card was deleted while this charge was on its way: PayTabs refused a token deleted
    under it. Told as a refusal, the merchant read "fix the request" and a declined card."""
    async with deps.uow() as uow:
        card = await uow.cards.get(payment.saved_card_id or "")
    if card is None or card.deleted_at is None:
        return
    reason = with_calls(
        f"the card was deleted while this charge was on its way; PayTabs refused its token "
        f"({error.message}) and charged nothing",
        calls,
    )
    code = "" if error.code is None else str(error.code)
    fail = lambda p, at: p.initiation_failed(reason, at=at, response_code=code)  # noqa: E731
    await change_saved(deps, payment, fail, None)
    raise SavedCardDeleted(card, card.deleted_at, charge=payment.id)


#: PayTabs' codes for a token it does not know (deleted, expired, another profile's):
#: 209 "Invalid Merchant Token". No other refusal says anything about the card.
TOKEN_REFUSED_CODES = frozenset({209})


async def _unless_token_refused(
    deps: PaymentDeps, payment: Payment, error: GatewayRejected, calls: Sequence[GatewayCall]
) -> None:
    """Raise ``SavedCardInvalid`` (the failed charge saved, its key left to the caller) when
    PayTabs refused the charge because it does not know the card's token: the card is marked
    refused first (its token kept: see ``SavedCard.refused``), so no later charge is sent. Told
    as a refusal, the merchant read "fix the request" and charged the dead card again and
    again."""
    if error.code not in TOKEN_REFUSED_CODES:
        return
    async with deps.uow() as uow:
        card = await uow.cards.get(payment.saved_card_id or "")
        if card is None:
            return
        await uow.cards.refuse(card.id, now=deps.clock())
        await uow.commit()
    reason = with_calls(
        f"the saved card is no longer valid at PayTabs: PayTabs refused its token as unknown "
        f"({error.message}) and charged nothing",
        calls,
    )
    code = str(error.code)
    fail = lambda p, at: p.initiation_failed(reason, at=at, response_code=code)  # noqa: E731
    await change_saved(deps, payment, fail, None)
    raise SavedCardInvalid(card, charge=payment.id)


def _answered(
    result: GatewayResult, deps: PaymentDeps, reason: str
) -> Callable[[Payment, datetime], object]:
    def apply(payment: Payment, at: datetime) -> object:
        # No page: the charge's own transaction is the payment's, then its result decides.
        payment.page_created(result.tran_ref, None, at=at, reason=reason)
        return payment.apply_gateway_result(
            result, at=at, currency_conversion=deps.currency_conversion
        )

    return apply


async def customer_cards(deps: PaymentDeps, customer_id: str) -> Sequence[SavedCard]:
    async with deps.uow() as uow:
        return await uow.cards.of_customer(customer_id)


async def delete_saved_card(deps: PaymentDeps, card_id: str) -> SavedCard:
    """Stop charges at once (``deleted_at``, committed before PayTabs is asked), then delete
    the token at PayTabs and forget our copy. Deleting again is harmless and finishes what a
    failed PayTabs call left: GatewayNotReached / GatewayOutcomeUnknown propagate with the
    card already unusable."""
    now = deps.clock()
    async with deps.uow() as uow:
        card = await uow.cards.get(card_id, for_update=True)
        if card is None:
            raise SavedCardNotFound(card_id)
        await uow.cards.delete(card_id, now=now)
        await uow.commit()
    if card.token is not None:
        await _delete_at_paytabs(deps, card_id, card.token)
    return replace(card, token=None, deleted_at=card.deleted_at or now)


@dataclass(frozen=True, slots=True)
class TokensLeft:
    """What one pass did with the tokens of cards deleted before their token came."""

    deleted: int = 0
    """Deleted at PayTabs and forgotten here by this pass (not by another pass at once)."""
    unreachable: int = 0
    """Still held: PayTabs could not be asked, or its answer was lost; the next pass tries."""


async def delete_left_tokens(deps: PaymentDeps, *, limit: int = 100) -> TokensLeft:
    """Delete at PayTabs the tokens of cards deleted before their token came (the card was
    deleted while the payment saving it was still unpaid; PayTabs issued the token when it
    was paid). Reconciliation's job. Two passes at once may both ask PayTabs (deleting twice
    is harmless) but only one counts each token; one PayTabs cannot be asked about is
    counted unreachable, and the pass goes on with the rest unless the token breaker is open."""
    async with deps.uow() as uow:
        cards = await uow.cards.deleted_with_token(limit)
    deleted = unreachable = 0
    for index, card in enumerate(cards):
        if card.token is None:
            continue
        if deps.gateway.unavailable_for(Operation.TOKEN) is not None:
            unreachable += len(cards) - index
            break
        try:
            deleted += await _delete_at_paytabs(deps, card.id, card.token)
        except (GatewayNotReached, GatewayOutcomeUnknown) as error:
            log.info("a left token could not be deleted", extra={"reason": str(error)})
            unreachable += 1
    return TokensLeft(deleted, unreachable)


async def _delete_at_paytabs(deps: PaymentDeps, card_id: str, token: str) -> bool:
    """Whether this call forgot the token (after PayTabs deleted it, or never held it)."""
    # GatewayRejected: PayTabs holds no such token (deleted before), nothing left there
    with contextlib.suppress(GatewayRejected):
        await deps.gateway.delete_token(token)
    async with deps.uow() as uow:
        forgotten = await uow.cards.forget_token(card_id, token)
        await uow.commit()
    return forgotten
