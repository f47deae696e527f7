"""Saved cards over HTTP: charge one (a recurring charge), list a customer's, delete one.

A card is saved by a create with ``save_card: true`` (``payments.py``); its token never leaves
the service, so these routes name it by id and show the scheme, last four and expiry only.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import AfterValidator
from starlette.responses import Response

from paytabs_guard.domain import Operation, Payment
from paytabs_guard.service.gateway import GatewayNotReached, GatewayOutcomeUnknown
from paytabs_guard.service.payments import IdempotentCreate

from .dependencies import ClientDep, PaymentServiceDep, PaymentWriteDep
from .errors import retry_after_ms, retry_after_seconds
from .field_rules import not_a_card_number
from .payments import CREATE_RESPONSES, run_create
from .problems import Problem
from .schemas import (
    CUSTOMER_ID_DESCRIPTION,
    CUSTOMER_ID_PATTERN,
    PROBLEM_RESPONSE,
    NoBody,
    PaymentOut,
    RecurringChargeIn,
    SavedCardListOut,
    SavedCardOut,
)
from .strict_query import STRICT_QUERY

router = APIRouter(prefix="/payments/v2", tags=["saved cards"], dependencies=STRICT_QUERY)


@router.post(
    "/recurring",
    status_code=201,
    response_model=PaymentOut,
    summary="Charge a saved card (PayTabs' recurring sale, no hosted page)",
    responses=CREATE_RESPONSES,
)
async def recurring(body: RecurringChargeIn, write: PaymentWriteDep) -> Response:
    """201 with the payment, completed; 202 when PayTabs' answer was lost (reconciled later);
    404 / 409 when the card is unknown, deleted, not saved yet or no longer valid at PayTabs
    (nothing is sent; a charge already on its way when the card was deleted is refused by
    PayTabs, nothing charged, and the 409 names its failed payment in ``payment_id``); 409
    `saved-card-invalid` with the failed payment's ``payment_id`` when PayTabs refuses the
    card's token as unknown (code 209: deleted there, expired, the profile changed): the card
    is no longer listed nor charged, ask the customer to pay again with ``save_card``; 422
    when PayTabs declined or refused otherwise; 503 with Retry-After when PayTabs is
    unavailable."""

    async def charge_it(idempotency: IdempotentCreate | None) -> Payment:
        return await write.service.charge_saved_card(body.command(), idempotency=idempotency)

    payload = body.model_dump(mode="json")
    doomed = partial(write.service.check_chargeable, body.saved_card_id)
    return await run_create(write, payload, Operation.TOKEN, charge_it, doomed=doomed)


CustomerIdPath = Annotated[
    str,
    Path(pattern=CUSTOMER_ID_PATTERN, description=CUSTOMER_ID_DESCRIPTION),
    AfterValidator(not_a_card_number),  # a card number in the address: 422, never looked up
]


@router.get(
    "/customers/{customer_id}/cards",
    response_model=SavedCardListOut,
    summary="A customer's saved cards that can be charged (masked), oldest first",
    responses={401: PROBLEM_RESPONSE, 422: PROBLEM_RESPONSE},
)
async def list_cards(
    customer_id: CustomerIdPath, service: PaymentServiceDep, _client: ClientDep
) -> SavedCardListOut:
    cards = await service.customer_cards(customer_id)
    return SavedCardListOut(data=[SavedCardOut.of(card) for card in cards])


@router.delete(
    "/cards/{card_id}",
    response_model=SavedCardOut,
    summary="Delete a saved card (here and its token at PayTabs); deleting again is harmless",
    responses={
        401: PROBLEM_RESPONSE,
        404: PROBLEM_RESPONSE,
        422: PROBLEM_RESPONSE,
        502: PROBLEM_RESPONSE,
        503: PROBLEM_RESPONSE,
    },
)
async def delete_card(
    card_id: Annotated[str, Path(max_length=64)],
    service: PaymentServiceDep,
    _client: ClientDep,
    _body: NoBody = None,
) -> SavedCardOut:
    """200 with the card (``deleted_at`` set). From then on it cannot be charged, even when
    PayTabs could not be reached to delete the token (503/502: delete again to finish)."""
    try:
        return SavedCardOut.of(await service.delete_card(card_id))
    except GatewayNotReached as closed:
        # Not the create's "nothing was sent; retry with the same Idempotency-Key": the card
        # is disabled here already, and DELETE takes no key.
        seconds = retry_after_seconds(closed.retry_after)
        raise Problem(
            "gateway_unavailable",
            "PayTabs is unavailable",
            503,
            f"The card is deleted here and can no longer be charged, but PayTabs could not be "
            f"reached to delete its token; send this DELETE again after {seconds} s to finish.",
            # The precise wait as every other 503 gives it, for clients that read the body.
            extensions={
                "retry_after": seconds,
                "retry_after_ms": retry_after_ms(closed.retry_after or 0.0),
            },
            headers={"Retry-After": str(seconds)},
        ) from closed
    except GatewayOutcomeUnknown as unclear:
        # Not the payments' "GET the payment in a minute": there is no payment here, and
        # deleting a token twice is harmless.
        raise Problem(
            "gateway_outcome_unknown",
            "PayTabs' answer was lost",
            502,
            "The card is deleted here and can no longer be charged, but PayTabs' answer to "
            "deleting its token was lost; send this DELETE again to finish (deleting twice is "
            "harmless).",
        ) from unclear
