"""Refund, capture, void and release of a payment: the follow-ups, each idempotent, failing
fast while PayTabs' follow-up circuit is open (``Prefer: wait`` holds them instead)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from paytabs_guard.domain import Money, Operation, Payment
from paytabs_guard.entrypoints import draining
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayTurnedAway,
)
from paytabs_guard.service.payments import PaymentService

from .dependencies import PaymentWrite, PaymentWriteDep
from .errors import gateway_unavailable, request_id_of
from .idempotency import run_idempotent
from .payments import (
    WRITE_ERRORS,
    json_answer,
    payment_id_of,
    preference_applied,
    stored_key_answer,
)
from .prefer_wait import requested_wait
from .problems import PAYMENT_ID_HEADER, Problem, problem_response
from .schemas import CaptureIn, ConfirmedPaymentOut, NoBody, PaymentOut, RefundIn
from .strict_query import STRICT_QUERY

router = APIRouter(prefix="/payments/v2", tags=["payments"], dependencies=STRICT_QUERY)


async def _money(
    service: PaymentService, payment_id: str, amount: str, currency: str | None
) -> Money:
    """``amount`` in the payment's currency (``currency``, if given, must be that one)."""
    payment = await service.get(payment_id)
    expected = payment.amount.currency
    if currency is not None and currency != expected:
        raise Problem(
            "invalid_payment_request",
            "Invalid payment request",
            422,
            f"currency: the payment is in {expected}; send {expected} or leave currency out.",
            extensions={"field": "currency"},
        )
    return Money.parse_request(amount, expected)  # the create's rule: "1.000" is no SAR


FollowUp = Callable[[], Awaitable[Payment]]


async def _run_follow_up(
    write: PaymentWrite, body: dict[str, object], follow_up: FollowUp
) -> Response:
    """200 with the payment; 202 (``confirmed`` false) when PayTabs' answer was unclear."""
    request, runtime, service = write.request, write.runtime, write.service
    hold = runtime.holding.request(
        service,
        Operation.FOLLOW_UP,
        requested_wait(request),
        shutdown=draining.of_request(request.scope),
    )
    if service.unavailable_for(Operation.FOLLOW_UP) is not None:
        # A payment that does not exist is a 404 now, not a wait and a 503: "come back later"
        # would send its client round for ever. One read by primary key, no write.
        await service.get(request.path_params["payment_id"])
        if hold.wanted:
            # Nor is a key that holds an answer held for PayTabs: it is replayed at once, as
            # without the header.
            earlier = await stored_key_answer(write, body)
            if earlier is not None:
                return earlier

    async def run() -> Response:
        try:
            # The admission that binds, as a create's (payments.py): taken after the key's
            # claim (a request waiting for another's answer under its key holds no slot) and
            # before the payment's hold, so a request woken for a trial slot either has it
            # for its call or is turned away with nothing held or sent, and held again.
            with service.reserve(Operation.FOLLOW_UP):
                payment = await follow_up()
        except GatewayOutcomeUnknown:
            payment = await service.get(request.path_params["payment_id"])
            out = ConfirmedPaymentOut(
                **PaymentOut.of(payment).model_dump(),
                confirmed=False,
                reason="PayTabs gave no clear answer; the operation is confirmed by query "
                "later. GET the payment to see whether it was applied: this Idempotency-Key "
                "replays this answer, so one that did not happen is sent again with a new key",
            )
            return json_answer(out, 202, **{PAYMENT_ID_HEADER: payment.id})
        return json_answer(PaymentOut.of(payment), 200, **{PAYMENT_ID_HEADER: payment.id})

    async def attempt() -> Response:
        # As for a create: fail fast before the idempotency claim and the payment's hold
        # (committed writes, then their release); held again while the wait lasts.
        service.admit(Operation.FOLLOW_UP)
        return await run_idempotent(
            request,
            runtime.container,
            write.client,
            write.key,
            body,
            run,
            wait_seconds=runtime.options.idempotency_wait_seconds,
            resource_id=payment_id_of,
        )

    try:
        response = await hold.run(attempt)
    except GatewayTurnedAway as closed:
        # Unless the key already holds an answer.
        earlier = await stored_key_answer(write, body)
        if earlier is not None:
            return preference_applied(earlier, hold.applied)
        problem = gateway_unavailable(closed.retry_after, prefer_wait=hold.applied)
        return problem_response(problem, request_id_of(request))
    except GatewayNotReached as closed:
        if hold.applied is None:
            raise
        # Sent, and PayTabs unavailable: the client still hears that its wait was applied.
        raise gateway_unavailable(closed.retry_after, prefer_wait=hold.applied) from closed
    return preference_applied(response, hold.applied)


_FOLLOW_UP_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": ConfirmedPaymentOut, "description": "PayTabs' answer was unclear"},
    **WRITE_ERRORS,
}


@router.post(
    "/{payment_id}/refund",
    response_model=PaymentOut,
    summary="Refund part or all of a completed payment",
    responses=_FOLLOW_UP_RESPONSES,
)
async def refund(payment_id: str, body: RefundIn, write: PaymentWriteDep) -> Response:
    """200 with the payment: `refunded` grew by the amount when PayTabs approved the refund,
    `pending_refunds` when PayTabs reports it pending (its callback or a query settles it
    later); 202 when PayTabs' answer was unclear."""

    async def refund_it() -> Payment:
        amount = await _money(write.service, payment_id, body.amount, body.currency)
        return await write.service.refund(payment_id, amount)

    return await _run_follow_up(write, body.model_dump(mode="json"), refund_it)


@router.post(
    "/{payment_id}/capture",
    response_model=PaymentOut,
    summary="Capture an authorised payment (all of it without an amount)",
    responses=_FOLLOW_UP_RESPONSES,
)
async def capture(
    payment_id: str, write: PaymentWriteDep, body: CaptureIn | None = None
) -> Response:
    body = body or CaptureIn()

    async def capture_it() -> Payment:
        amount = None
        if body.amount is not None:
            amount = await _money(write.service, payment_id, body.amount, body.currency)
        return await write.service.capture(payment_id, amount)

    return await _run_follow_up(write, body.model_dump(mode="json"), capture_it)


@router.post(
    "/{payment_id}/void",
    response_model=PaymentOut,
    summary="Release an authorisation that was not captured",
    responses=_FOLLOW_UP_RESPONSES,
)
async def void(payment_id: str, write: PaymentWriteDep, _body: NoBody = None) -> Response:
    return await _run_follow_up(write, {}, lambda: write.service.void(payment_id))


@router.post(
    "/{payment_id}/release",
    response_model=PaymentOut,
    summary="Release an authorisation with PayTabs' release (same outcome as void)",
    responses=_FOLLOW_UP_RESPONSES,
)
async def release(payment_id: str, write: PaymentWriteDep, _body: NoBody = None) -> Response:
    return await _run_follow_up(write, {}, lambda: write.service.release(payment_id))
