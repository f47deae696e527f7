"""Every error becomes an RFC 9457 problem, mapped here once.

Client errors say what to fix; nothing the client sent is echoed back verbatim (no input values
in validation errors). Domain errors keep their message: it names the rule and the amounts.

=========================================  ======  ==============================
exception                                  status  problem type
=========================================  ======  ==============================
RequestValidationError (FastAPI)           422     invalid-request
HTTPException 404 / 405 / other            same    not-found / method-not-allowed
PaymentNotFound                            404     payment-not-found
SavedCardNotFound                          404     saved-card-not-found
SavedCardDeleted / NotReady / NeverSaved   409     saved-card-deleted / -not-ready / -never-saved
SavedCardInvalid                           409     saved-card-invalid
InvalidPaymentRequest, InvalidMoney        422     invalid-payment-request
AmountExceedsAvailable                     422     amount-exceeds-available
PaymentStateError                          409     payment-state-conflict
ConcurrentUpdate (storage)                 409     concurrent-update
database unreachable (STORAGE_UNAVAILABLE) 503     storage-unavailable (Retry-After)
GatewayRejected                            422     gateway-rejected
GatewayNotReached                         503     gateway-unavailable (Retry-After)
GatewayOutcomeUnknown                      502     gateway-outcome-unknown
GatewayReferenceTaken (storage)            502     gateway-reference-conflict
=========================================  ======  ==============================
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from paytabs_guard.bootstrap import STORAGE_CONFLICTS, STORAGE_UNAVAILABLE
from paytabs_guard.domain import (
    AmountExceedsAvailable,
    DomainError,
    FollowUpInProgress,
    InvalidMoney,
    InvalidPaymentRequest,
    PaymentStateError,
)
from paytabs_guard.observability import redact_card_numbers
from paytabs_guard.service.gateway import (
    GatewayNotReached,
    GatewayOutcomeUnknown,
    GatewayRejected,
)
from paytabs_guard.service.payments import PaymentNotFound
from paytabs_guard.service.ports import GatewayReferenceTaken
from paytabs_guard.service.saved_cards import SavedCardError

from . import problems
from .problems import Problem, problem_handler, problem_response

_MAX_LISTED_ERRORS: Final = 20
_FIELD_NAME: Final = re.compile(r"[a-z_]{1,40}")
_SPREAD: Final = random.Random()
STORAGE_RETRY_AFTER: Final = 5


def request_id_of(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def retry_after_seconds(seconds: float | None) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds)) if seconds is not None else 1


def spread_retry_after(seconds: float | None, rng: random.Random = _SPREAD) -> int:
    """``Retry-After`` for a turned-away client: the true wait rounded up, plus up to a quarter
    of it at random, so that the clients a long outage turned away do not all come back in
    the same second. Short waits stay exact: rounding up to whole seconds already spreads
    clients turned away at different moments over a second, and a later return costs sales."""
    base = retry_after_seconds(seconds)
    return base + rng.randint(0, base // 4)


RETURN_SPREAD_MAX: Final = 0.25
"""Seconds by which the precise wait is spread at the most (see :func:`spread_wait`)."""


def spread_wait(seconds: float, rng: random.Random = _SPREAD) -> float:
    """The wait a turned-away client is given: the true one plus up to a quarter of it (at
    most ``RETURN_SPREAD_MAX``) at random. Every client turned away while the circuit is open
    is sent back for the same moment, the next probe's verdict; unspread, they would all come
    back in the same few milliseconds, once per probe, and the last of a few hundred would
    wait for the others' 503s. Never earlier than the truth: a client back early finds nothing
    changed and is turned away again."""
    return seconds + rng.uniform(0.0, min(seconds / 4.0, RETURN_SPREAD_MAX))


def retry_after_ms(seconds: float) -> int:
    """A wait in whole milliseconds, rounded up (a caller back early finds nothing changed)."""
    return max(0, math.ceil(seconds * 1000))


def gateway_unavailable(
    retry_after: float | None,
    *,
    prefer_wait: int | None = None,
    extra: float | None = None,
    attempt: str | None = None,
) -> Problem:
    """503 for a call the breaker turned away: told to come back in ``retry_after`` seconds,
    plus ``extra`` for a create with a place in the return line (return_pace.py), else spread
    at random. ``attempt``: the payment stored as failed for a call that went out and found
    PayTabs unavailable (the breaker's turn-aways store nothing)."""
    # The line orders and spreads the precise wait; clients that read only the header (whole
    # seconds) are spread at random over the seconds of a long wait either way.
    wait = spread_wait(retry_after or 0.0) if extra is None else (retry_after or 0.0) + extra
    seconds = spread_retry_after(wait)
    precise_ms = retry_after_ms(wait)
    headers = {"Retry-After": str(seconds)}
    if prefer_wait is not None:
        headers["Preference-Applied"] = f"wait={prefer_wait}"
    retry = (
        f"retry after {seconds} s with the same Idempotency-Key (or send 'Prefer: wait=N' to "
        "be held until it is back)."
    )
    if attempt is None:
        detail = f"PayTabs cannot be reached right now and nothing was sent; {retry}"
        extensions: dict[str, object] = {}
    else:
        # Sent, and PayTabs unreachable or turning it away (a 503 or 429 may still have made
        # a page): what is true is that nothing was charged and no page handed out.
        detail = (
            "PayTabs could not be reached or turned the request away: nothing was charged and "
            f"no payment page was handed out. The attempt is kept as payment {attempt} in state "
            f"failed; the key is free again, so a retry starts a new payment: {retry}"
        )
        extensions = {"payment_id": attempt}
    return Problem(
        "gateway_unavailable",
        "PayTabs is unavailable",
        503,
        detail,
        extensions={**extensions, "retry_after": seconds, "retry_after_ms": precise_ms},
        headers=headers,
    )


_MAX_SHOWN_ID: Final = 64  # our ids are 28 characters


def shown_cut(text: str, limit: int) -> str:
    """``text`` from a request as an answer or a span repeats it: its card numbers hidden, and
    first cut at ``limit`` characters when longer, back past any digits and separators (no
    part of a card number it cut through is shown), ending in ``…``. Looking for card numbers
    costs some 11 us a character on digits between separators (``1/1/1...``): 60 KB of them
    took a second of event loop."""
    if len(text) <= limit:
        return redact_card_numbers(text)
    end = limit
    while end and (text[end - 1].isdigit() or not text[end - 1].isalnum()):
        end -= 1
    return redact_card_numbers(text[:end]) + "…"


def shown_id(payment_id: str, what: str = "id") -> str:
    """An id from the client's request (a payment's, an event's, a breaker's name) as a 404
    repeats it: as sent, quoted, when it is short and printable; otherwise no echo at all: a
    20 KB or control-character "id" is not worth repeating to its sender (or into a log)."""
    if len(payment_id) <= _MAX_SHOWN_ID and payment_id.isprintable():
        return repr(redact_card_numbers(payment_id))  # as a field name is (_location)
    return f"with that {what}"


def problem_for(error: Exception) -> Problem | None:
    """The problem an application exception stands for; None for unexpected errors (bugs)."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, PaymentNotFound):
        return Problem(
            "payment_not_found",
            "Payment not found",
            404,
            f"There is no payment {shown_id(error.payment_id)}; check the id returned by "
            "POST /payments/v2/create.",
        )
    if isinstance(error, SavedCardError):
        # The card id comes from the client's path or body: a card number in it is not repeated.
        charge = {} if error.payment_id is None else {"payment_id": error.payment_id}
        return Problem(
            error.code,
            error.title,
            error.status,
            redact_card_numbers(str(error)),
            extensions={"card_id": redact_card_numbers(error.card_id), **charge},
        )
    if isinstance(error, AmountExceedsAvailable):
        return Problem(
            "amount_exceeds_available",
            "Amount exceeds what is available",
            422,
            str(error),
            extensions={
                "available": error.available.format(),
                "currency": error.available.currency,
            },
        )
    if isinstance(error, InvalidPaymentRequest):
        return Problem(
            "invalid_payment_request",
            "Invalid payment request",
            422,
            str(error),
            extensions={"field": error.field},
        )
    if isinstance(error, InvalidMoney):
        return Problem(
            "invalid_payment_request", "Invalid amount", 422, f"amount: {error}", extensions={}
        )
    if isinstance(error, PaymentStateError):
        return Problem(
            "payment_state_conflict",
            "Not allowed in the payment's state",
            409,
            f"{_sentence(str(error))} Reload the payment (GET /payments/v2/{error.payment_id}) "
            "and decide again.",
            extensions={"state": error.state},
            transient=isinstance(error, FollowUpInProgress),
        )
    if isinstance(error, DomainError):
        return Problem("payment_rule", "Refused by a payment rule", 422, str(error))
    if isinstance(error, STORAGE_CONFLICTS):
        return Problem(
            "concurrent_update",
            "Changed concurrently",
            409,
            "The payment changed while this request was applied; nothing was written. "
            "Send the request again.",
            headers={"Retry-After": "1"},
            transient=True,
        )
    if isinstance(error, STORAGE_UNAVAILABLE):
        return Problem(
            "storage_unavailable",
            "Database unavailable",
            503,
            "The service cannot reach its database right now; nothing was recorded. Retry "
            f"after {STORAGE_RETRY_AFTER} s with the same Idempotency-Key.",
            extensions={"retry_after": STORAGE_RETRY_AFTER},
            headers={"Retry-After": str(STORAGE_RETRY_AFTER)},
        )
    if isinstance(error, GatewayRejected):
        return Problem(
            "gateway_rejected",
            "Refused by PayTabs",
            422,
            f"PayTabs refused the request: {error.message}",
            extensions={"gateway_code": error.code},
        )
    if isinstance(error, GatewayNotReached):
        return gateway_unavailable(error.retry_after, attempt=error.payment_id)
    if isinstance(error, GatewayReferenceTaken):
        kept = (
            f" The attempt is kept as payment {error.payment_id} in state failed; create the "
            "payment again with a new Idempotency-Key."
            if error.payment_id
            else " Nothing was recorded."
        )
        return Problem(
            "gateway_reference_conflict",
            "PayTabs reused a transaction reference",
            502,
            f"PayTabs answered with transaction reference {error.tran_ref or '(not shown)'}, "
            "which another payment here already holds, so its answer was not taken and no page "
            "was handed out. This service's database and the PayTabs profile disagree (a "
            "database used with another profile, or a simulator restarted)." + kept,
            extensions={"payment_id": error.payment_id} if error.payment_id else {},
        )
    if isinstance(error, GatewayOutcomeUnknown):
        return Problem(
            "gateway_outcome_unknown",
            "PayTabs gave no clear answer",
            502,
            "PayTabs did not answer clearly, so the operation may have happened. GET the "
            "payment in a minute (it is reconciled by query); resend only with the same "
            "Idempotency-Key.",
        )
    return None


def _sentence(text: str) -> str:
    """``text`` ending as a sentence, so a hint can follow it."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _location(loc: Sequence[Any]) -> str:
    # ("body", "customer", "email") -> "customer.email"; the "body"/"query" prefix is kept apart.
    # A name the client chose (an unknown field or parameter, a metadata key) is repeated as
    # sent, but for a card number in it, hidden as the logs hide it: the 422 is no way around
    # the rule that refuses card numbers in what is stored. A long one is cut (a 60 KB name
    # came back twice, and took a second to search).
    if not loc:
        return "request"
    return ".".join(shown_cut(str(part), _MAX_SHOWN_ID) for part in loc[1:]) or str(loc[0])


def _not_json(item: Mapping[str, Any], loc: Sequence[Any]) -> str:
    reason = str((item.get("ctx") or {}).get("error", "")).lower() or "it does not parse"
    at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    return f"is not valid JSON ({reason}{at}); send one well-formed JSON document"


def _text_length(item: Mapping[str, Any]) -> str:
    context = item.get("ctx") or {}
    if item.get("type") == "too_long":
        return f"String should have at most {context.get('max_length')} characters"
    return f"String should have at least {context.get('min_length')} characters"


def validation_problem(error: RequestValidationError) -> Problem:
    """422 listing each invalid field with the rule it broke (never the value sent)."""
    items = []
    for item in list(error.errors())[:_MAX_LISTED_ERRORS]:
        loc = tuple(item.get("loc", ()))
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        where = str(loc[0]) if loc else "request"
        field = _location(loc)
        if item.get("type") in ("too_long", "too_short") and isinstance(item.get("input"), str):
            # A length rule on an optional text field is pydantic's rule for collections,
            # whose message counts "items"; a client fixing a city needs characters.
            message = _text_length(item)
        elif item.get("type") == "json_invalid":
            # FastAPI puts the character offset where a field name goes: ("body", 17).
            field, message = where, _not_json(item, loc)
        named, colon, rest = message.partition(": ")
        if field == "body" and colon and _FIELD_NAME.fullmatch(named):
            # A rule across fields (the amount's decimals depend on the currency) names its
            # field itself: report it there, like any other field error.
            field, message = named, rest
        items.append({"in": where, "field": field, "message": message})
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in items[:3])
    return Problem(
        "invalid_request",
        "Invalid request",
        422,
        f"Fix these fields and send the request again: {summary}.",
        extensions={"errors": items},
    )


def http_problem(error: HTTPException) -> Problem:
    """Starlette's own 404/405 (and any other HTTPException) as problems."""
    if error.status_code == 404:
        return problems.not_found()
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        return Problem(
            "method_not_allowed",
            "Method not allowed",
            405,
            f"This URL accepts only {allowed or 'other methods'}; send one of those.",
            headers={"Allow": allowed} if allowed else None,
        )
    status = error.status_code if 400 <= error.status_code <= 599 else 500
    return Problem(
        "http_error",
        "Request failed",
        status,
        str(error.detail),
        headers=dict(error.headers or {}),
    )


async def _application_error(request: Request, exc: Exception) -> Response:
    problem = problem_for(exc)
    if problem is None:
        raise exc  # a bug: the request middleware answers 500 and logs it
    return problem_response(problem, request_id_of(request))


async def _validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise exc
    return problem_response(validation_problem(exc), request_id_of(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    return problem_response(http_problem(exc), request_id_of(request))


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on ``app``."""
    app.add_exception_handler(Problem, problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for error in (
        PaymentNotFound,
        SavedCardError,
        DomainError,
        InvalidMoney,
        GatewayRejected,
        GatewayNotReached,
        GatewayOutcomeUnknown,
        GatewayReferenceTaken,
        *STORAGE_CONFLICTS,
        *STORAGE_UNAVAILABLE,
    ):
        app.add_exception_handler(error, _application_error)


def interrupted() -> Problem:
    """503 for a request cancelled before it was answered: a shutdown past its grace period.
    (Left to uvicorn, the client got a plain-text 500.)"""
    return Problem(
        "interrupted",
        "Request interrupted",
        503,
        "The service stopped (a restart) before this request was answered. Send it again "
        "with the same Idempotency-Key: the key answers what happened, and a write that "
        "reached PayTabs is never sent twice.",
        headers={"Retry-After": "1"},
    )


def internal_error() -> Problem:
    """500: an unexpected error; the details are in the log under the request id."""
    return Problem(
        "internal_error",
        "Internal error",
        500,
        "Something went wrong on our side; nothing you sent is at fault. Retry with the same "
        "Idempotency-Key, and quote the request_id if it persists.",
    )
