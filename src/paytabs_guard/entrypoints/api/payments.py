"""The merchant API's payment routes: schema in, a ``PaymentService`` call, schema out.

Writes take an ``Idempotency-Key`` (see ``idempotency.py``); errors are problems (``errors.py``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator
from starlette.responses import Response

from paytabs_guard.domain import Operation, Payment, PaymentState, Trigger
from paytabs_guard.entrypoints import draining
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayTurnedAway,
)
from paytabs_guard.service.payments import IdempotentCreate, PaymentNotFound, PaymentService
from paytabs_guard.service.queries import MAX_PAGE_SIZE

from . import problems
from .cursors import decode_cursor, encode_cursor, invalid_cursor
from .dependencies import ClientDep, PaymentServiceDep, PaymentWrite, PaymentWriteDep, RuntimeDep
from .errors import gateway_unavailable, request_id_of, retry_after_ms, spread_wait
from .idempotency import run_idempotent_create, scope_of, stored_answer
from .prefer_wait import requested_wait
from .problems import PAYMENT_ID_HEADER, Problem, problem_response
from .schemas import (
    PROBLEM_RESPONSE,
    ConfirmedPaymentOut,
    CreatePaymentIn,
    PaymentErrorOut,
    PaymentListOut,
    PaymentOut,
)
from .strict_query import STRICT_QUERY
from .sync import sync_within

router = APIRouter(prefix="/payments/v2", tags=["payments"], dependencies=STRICT_QUERY)
#: ``POST /payments/v2/create`` alone, for the app to match first: FastAPI matches the routers
#: it includes one after another, and reaching the last cost a create 40 us.
creates = APIRouter(prefix="/payments/v2", tags=["payments"], dependencies=STRICT_QUERY)

_PROBLEM = PROBLEM_RESPONSE
WRITE_ERRORS: dict[int | str, dict[str, Any]] = dict.fromkeys(
    (401, 404, 409, 413, 422, 503), _PROBLEM
)


def json_answer(model: PaymentOut, status_code: int = 200, **headers: str) -> Response:
    # pydantic's own encoder: one pass in Rust instead of a dict and then json.dumps, and the
    # same bytes as JSONResponse sends (compact, UTF-8 as it is).
    body = model.model_dump_json()
    return Response(body, status_code, headers, media_type="application/json")


def payment_id_of(response: Response) -> str | None:
    return response.headers.get(PAYMENT_ID_HEADER)


def _refused(payment: Payment, request: Request) -> Response:
    extensions: dict[str, object] = {"payment_id": payment.id, "state": payment.state.value}
    last = payment.history[-1] if payment.history else None
    if last is not None and last.trigger is Trigger.NO_GATEWAY_RECORD:
        # Nothing in the request to fix: PayTabs' answers were lost, and no page it holds can
        # be paid. A gateway failure, said as one.
        problem = Problem(
            "gateway_no_page",
            "PayTabs opened no usable page",
            502,
            f"PayTabs' answers to the create were lost and the pages it opened cannot be "
            f"reached, so nothing can be paid. The attempt is kept as payment {payment.id} in "
            "state failed; create the payment again with a new Idempotency-Key.",
            extensions=extensions,
        )
        return problem_response(problem, request_id_of(request))
    declined = payment.last_payment_error
    if declined is not None:
        # A decline (a saved card's charge): nothing in the request to fix, the card is the
        # problem. Say why, as PayTabs did, and the same words GET /payments/v2/{id} shows.
        detail = (
            f"PayTabs did not approve the charge: {declined.message} (code {declined.code}, "
            f"{declined.decline_category}); the request itself was fine. The attempt is kept as "
            f"payment {payment.id} in state {payment.state.value}. Charge again, with a new "
            "Idempotency-Key, once the customer has renewed the card or chosen another, or send "
            "them to a hosted page."
        )
        extensions["last_payment_error"] = PaymentErrorOut.from_error(declined).model_dump()
    else:
        reason = payment.history[-1].reason if payment.history else "PayTabs refused the payment"
        detail = (
            f"{reason}. The attempt is kept as payment {payment.id} in state failed (it shows in "
            "GET /payments/v2); fix the request and create a new payment with a new "
            "Idempotency-Key."
        )
    problem = Problem("gateway_rejected", "Refused by PayTabs", 422, detail, extensions=extensions)
    return problem_response(problem, request_id_of(request))


#: The answers of a create (a hosted page, a recurring charge).
CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": PaymentOut, "description": "PayTabs did not answer clearly: state unknown"},
    **WRITE_ERRORS,
    502: {
        **_PROBLEM,
        "description": "gateway_no_page: PayTabs' answers to the create were lost and nothing "
        "it holds can be paid; the attempt is kept as a failed payment (payment_id, "
        "X-Payment-Id). Create again with a new Idempotency-Key. gateway_reference_conflict: "
        "PayTabs opened the page under a transaction reference another payment holds (a "
        "database used with another profile); no page was handed out, the attempt is kept as "
        "a failed payment (payment_id, X-Payment-Id)",
    },
}


@creates.post(
    "/create",
    status_code=201,
    response_model=PaymentOut,
    summary="Create a payment and its PayTabs hosted page",
    responses=CREATE_RESPONSES,
)
async def create(body: CreatePaymentIn, write: PaymentWriteDep) -> Response:
    """201 with the page to redirect to; 202 when PayTabs' answer was lost (reconciled later);
    422 when PayTabs refused; 503 with Retry-After when PayTabs is unavailable (turned away
    before anything was sent; or sent and PayTabs unreachable or busy, which stores the
    attempt as a failed payment the 503 names in ``payment_id``: nothing was charged, no page
    handed out, and the key is free for the retry)."""

    async def create_it(idempotency: IdempotentCreate | None) -> Payment:
        return await write.service.create(body.command(), idempotency=idempotency)

    payload = body.model_dump(mode="json")
    return await run_create(write, payload, Operation.CREATE, create_it)


async def stored_key_answer(
    write: PaymentWrite, body: dict[str, Any], *, wait: bool = True
) -> Response | None:
    """The answer the request's key already holds (read, never claimed), for a write the
    breaker turns away; None without a key or an answer. ``wait``: for one still in flight."""
    if write.key is None:
        return None
    runtime = write.runtime
    return await stored_answer(
        write.request,
        runtime.container,
        write.client,
        write.key,
        body,
        wait_seconds=runtime.options.idempotency_wait_seconds if wait else 0.0,
    )


async def run_create(
    write: PaymentWrite,
    body: dict[str, Any],
    operation: Operation,
    start: Callable[[IdempotentCreate | None], Awaitable[Payment]],
    *,
    doomed: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """What every create (a hosted page, a recurring charge) shares: ``Prefer: wait`` and the
    fail-fast on ``operation``'s open circuit, the idempotent claim and the answer.
    ``doomed``, awaited before a 503 turns the create away, raises the error that would refuse
    it anyway (a deleted card): "retry later" would be a lie."""
    request, runtime, service = write.request, write.runtime, write.service
    # Its place in the line of creates turned away by an outage (return_pace.py).
    who = None if write.key is None else (scope_of(write.client), write.key)
    hold = runtime.holding.request(
        service,
        operation,
        requested_wait(request),
        who,
        shutdown=draining.of_request(request.scope),
    )

    async def answered_without_paytabs(*, client_waits: bool = True) -> Response | None:
        # A key that already holds an answer is answered with it (one read): a merchant
        # retrying a create that succeeded must hear 201, not "nothing was sent", whatever the
        # breaker says now; one still in flight is waited for, as with the circuit closed. A
        # create refused anyway (a deleted card) is refused: "retry later" would be a lie.
        earlier = await stored_key_answer(write, body, wait=client_waits)
        if earlier is not None:
            if who is not None:
                runtime.pace.leave(who)
            return earlier
        if doomed is not None:
            try:
                await doomed()
            except Exception:
                if who is not None:
                    runtime.pace.leave(who)  # refused for good: it waits for nothing
                raise
        return None

    async def turned_away(closed: GatewayNotReached, *, client_waits: bool = True) -> Response:
        # Fail fast before the idempotency claim: its two committed writes cost milliseconds,
        # the breaker check microseconds. Nothing is stored; once the circuit lets calls
        # through, a retry with the same key runs normally.
        earlier = await answered_without_paytabs(client_waits=client_waits)
        if earlier is not None:
            return earlier
        wait = closed.retry_after or 0.0
        extra = None if who is None else runtime.pace.line_wait(who, wait)
        problem = gateway_unavailable(wait, prefer_wait=hold.applied, extra=extra)
        return problem_response(problem, request_id_of(request))

    async def start_admitted(idempotency: IdempotentCreate | None) -> Payment:
        # The admission that binds, taken right before the claim stores anything and held until
        # the PayTabs call. The check above holds nothing: a crowd arriving at a half-open
        # breaker all pass it, and would all store a payment before only the first few found
        # a trial slot. Here each takes its slot or is turned away with nothing stored; a slot
        # unused (a replay, a refused card, an error) is given back when the block ends.
        with service.reserve(operation):
            return await start(idempotency)

    client_left = False

    async def attempt() -> Response:
        nonlocal client_left
        service.admit(operation)
        # While a crowd an outage turned away comes back, creates start in turns, the oldest
        # first, a few at a time; the reservation asks the breaker again (it may have opened).
        # A create turned away is answered (or held again) after its turn ends: its answer may
        # wait for another request under its key, and that wait must not hold up the line.
        async with runtime.pace.turn(who) as waited:
            if waited and await request.is_disconnected():
                client_left = True
                raise GatewayNotReached("the client left", retry_after=0.0)
            return await run_idempotent_create(
                request,
                runtime.container,
                write.client,
                write.key,
                body,
                start_admitted,
                lambda payment: created_response(payment, request),
                wait_seconds=runtime.options.idempotency_wait_seconds,
                resource_id=payment_id_of,
            )

    if hold.wanted and service.unavailable_for(operation) is not None:
        # Held, it would wait for PayTabs; a request that needs no call to PayTabs (a replay,
        # a doomed card) is answered at once, as it is without the header.
        earlier = await answered_without_paytabs()
        if earlier is not None:
            return earlier
    try:
        # Turned away by the check or the reservation (nothing claimed or stored), a request
        # with ``Prefer: wait`` is held again for what is left of its wait (prefer_wait.py).
        response = await hold.run(attempt)
    except GatewayTurnedAway as closed:
        return await turned_away(closed)
    except GatewayNotReached as closed:
        if not client_left:
            if hold.applied is None:
                raise
            # Sent, and PayTabs unavailable: the attempt's own answer, held or not.
            problem = gateway_unavailable(
                closed.retry_after, prefer_wait=hold.applied, attempt=closed.payment_id
            )
            raise problem from closed
        return await turned_away(closed, client_waits=False)
    if who is not None:
        runtime.pace.leave(who)
    return preference_applied(response, hold.applied)


def created_response(payment: Payment, request: Request) -> Response:
    """A create's answer: 201 (202 while PayTabs' answer is unclear), 422 when refused."""
    if payment.state is PaymentState.FAILED:
        return _refused(payment, request)
    status = 202 if payment.state is PaymentState.UNKNOWN else 201
    return json_answer(
        PaymentOut.of(payment),
        status,
        Location=f"/payments/v2/{payment.id}",
        **{PAYMENT_ID_HEADER: payment.id},
    )


def preference_applied(response: Response, held: int | None) -> Response:
    """Say that the request was held for ``Prefer: wait`` (RFC 7240 Preference-Applied)."""
    if held is not None:
        response.headers["Preference-Applied"] = f"wait={held}"
    return response


@router.api_route("/create", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@router.api_route("/recurring", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def create_wrong_method() -> Response:
    # Without this, GET /payments/v2/create would match GET /payments/v2/{payment_id} (a 404
    # saying there is no payment "create").
    raise problems.method_not_allowed(("POST",))


def _written_as_a_time(value: object) -> object:
    """pydantic reads a bare number as Unix seconds: ``created_from=1700000000`` was taken
    for 2023-11-14, while the schema says date-time and the docs "with zone"."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be a date-time with a zone, e.g. 2025-01-29T10:00:00Z, not a number")
    return value


_NUMBER: Final = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?")
Instant = Annotated[datetime, BeforeValidator(_written_as_a_time)]


def _aware(value: datetime | None, name: str) -> datetime | None:
    """``value`` as an instant in UTC; a 422 without a zone, or when it has no UTC time (year
    1 at +14:00, year 9999 at -14:00: the database would fail on it, a 500)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise Problem(
            "invalid_request",
            "Invalid request",
            422,
            f"{name}: add a time zone (e.g. 2025-01-29T10:00:00Z).",
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Problem(
            "invalid_request",
            "Invalid request",
            422,
            f"{name}: a time between the years 1 and 9999 in UTC (e.g. 2025-01-29T10:00:00Z).",
        ) from None


@router.get(
    "",
    response_model=PaymentListOut,
    summary="List payments, newest first",
    responses={400: _PROBLEM, 401: _PROBLEM, 422: _PROBLEM},
)
async def list_all(
    service: PaymentServiceDep,
    _client: ClientDep,
    state: Annotated[list[PaymentState] | None, Query(description="Repeat for several")] = None,
    created_from: Annotated[Instant | None, Query(description="Inclusive, with zone")] = None,
    created_to: Annotated[Instant | None, Query(description="Exclusive, with zone")] = None,
    cursor: Annotated[str | None, Query(max_length=200, json_schema_extra={"minLength": 1})] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> PaymentListOut:
    after = decode_cursor("after", cursor)
    page = await service.list(
        states=state or (),
        created_from=_aware(created_from, "created_from"),
        created_to=_aware(created_to, "created_to"),
        after=after,
        limit=limit,
    )
    if after is not None and not page.payments:
        await _cursor_names_a_payment(service, after)
    return PaymentListOut(
        data=[PaymentOut.of(p) for p in page.payments],
        next_cursor=encode_cursor("after", page.next_after),
    )


async def _cursor_names_a_payment(service: PaymentService, after: str) -> None:
    """An empty page after a cursor is the end of the list only if the cursor names a
    payment: a cursor edited or made up would otherwise read as "no more payments". Asked
    only for an empty page, so paging costs nothing more."""
    try:
        await service.get(after)
    except PaymentNotFound:
        raise invalid_cursor() from None


@router.get(
    "/process/{payment_id}",
    response_model=ConfirmedPaymentOut,
    summary="Confirm an undecided payment with PayTabs, then return it",
    responses={401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def process(
    payment_id: str,
    request: Request,
    runtime: RuntimeDep,
    service: PaymentServiceDep,
    _client: ClientDep,
) -> Response:
    """Always 200: ``confirmed`` false (with ``reason``, and ``retry_after_ms`` when the circuit
    is open) when PayTabs could not be asked, and while the payment's own request may still be
    under way or on its way to PayTabs (``initiating``; an ``unknown`` recurring charge with
    nothing at PayTabs yet): then ``retry_after_ms`` says when that wait ends, and a charge
    PayTabs still holds nothing for is failed then (never sent). A decided payment is returned as it
    is, unless a refund, capture or void of it is unsettled (pending at PayTabs, or its answer
    was lost): then PayTabs is asked about that too. PayTabs is asked about one payment at most once
    every 2 seconds (per worker), and never twice at once: a request in between is answered
    from the stored state, which holds that answer. With ``Prefer: wait=N`` a request that
    must ask PayTabs is held while the query circuit is open, as a create is (one that need
    not, a decided payment or an unknown id, is answered at once)."""
    hold = runtime.holding.request(
        service,
        Operation.QUERY,
        requested_wait(request),
        shutdown=draining.of_request(request.scope),
    )
    # Held only when PayTabs had to be asked and the circuit turned the query away: an unknown
    # id (404) or a decided payment needs no query, and is answered at once, as without it.
    synced = await sync_within(runtime, service, payment_id)
    held_before = False
    while (
        synced.retry_after is not None
        and not synced.confirmed
        and service.unavailable_for(Operation.QUERY) is not None
        and await hold.wait(again=held_before)
    ):
        # Not asked (the circuit is open, or its trial slot was taken by another query
        # meanwhile): held, then asked again, for what is left of the wait.
        held_before = True
        synced = await sync_within(runtime, service, payment_id)
    out = PaymentOut.of(synced.payment).model_dump()
    retry_ms = (
        None if synced.retry_after is None else retry_after_ms(spread_wait(synced.retry_after))
    )
    confirmed = ConfirmedPaymentOut(
        **out, confirmed=synced.confirmed, reason=synced.reason, retry_after_ms=retry_ms
    )
    return preference_applied(json_answer(confirmed, 200), hold.applied)


@router.get(
    "/{payment_id}",
    response_model=PaymentOut,
    summary="A payment as stored (no PayTabs call)",
    responses={401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def read(payment_id: str, service: PaymentServiceDep, _client: ClientDep) -> PaymentOut:
    return PaymentOut.of(await service.get(payment_id))
