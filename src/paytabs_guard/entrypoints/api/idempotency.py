"""``Idempotency-Key`` for the merchant API's writes (Stripe and the IETF draft).

* The key is scoped to the merchant, not to the API key that sent it, and lives 24 h: every
  configured key (the old and new of a rotation in ``API_KEYS``, and the admin keys) acts for
  the one merchant and sees all of its payments, so a retry sent with the rotated key must
  replay the first answer, not charge or refund again.
* The request's *fingerprint* is a hash of the method, the path and the validated body in a
  canonical form, so the same JSON written with other spacing or key order is the same request,
  and so is an amount written with other zeros (``"5"``, ``"5.0"`` and ``"5.00"`` are one
  amount: a client that re-serialises a decimal on retry must get the first answer back).
* First use: the operation runs. A deterministic answer (2xx, and 4xx such as a PayTabs
  refusal or a domain rule) is stored and replayed for every repeat; a 5xx, an unexpected
  error or a refusal of the moment (``Problem.transient``: a concurrent change, a follow-up
  still waiting for PayTabs) releases the key, so the client's retry runs the operation
  again. A 503 "PayTabs unavailable" means nothing was sent, which is exactly when a retry
  must be allowed. Not so once a write (a page, a refund, a charge) has left for PayTabs: a
  request that fails after that, or is cancelled (a deploy's shutdown, a client gone), may
  have taken effect there, so it never runs again under its key. It answers, and keeps for
  the key, a 502 ``gateway-outcome-unknown`` naming the payment (:func:`keep_unsettled`);
  before this, a retry after a restart or a database blip refunded or charged a second time.
* No key: the operation runs unprotected, counted as ``missing``, and the answer carries a
  ``Warning: 299`` header saying that a retry may repeat it.
* The same key with another fingerprint: 422. A key still in flight: the repeat waits for the
  first request (polling the store, which works across instances) and replays its answer; past
  ``idempotency_wait_seconds`` it gets 409 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from paytabs_guard import tracing
from paytabs_guard.bootstrap import Container
from paytabs_guard.domain import Payment
from paytabs_guard.observability import get_logger
from paytabs_guard.service.gateway import GatewayNotReached
from paytabs_guard.service.gateway_calls import watched_writes
from paytabs_guard.service.payments import IdempotentCreate, KeyTaken
from paytabs_guard.service.ports import (
    ClaimStatus,
    GatewayReferenceTaken,
    IdempotencyClaim,
    StoredResponse,
)

from .auth import ApiClient
from .errors import problem_for, request_id_of
from .problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from .problems import PAYMENT_ID_HEADER, Problem, problem_response

TTL_SECONDS: Final = 24 * 3600
REPLAYED_HEADER: Final = "Idempotent-Replayed"
# A write without a key still runs (PayTabs' own API has none; rejecting would break clients),
# but says, in the standard place for "this worked, but", that a retry may do it twice.
MISSING_KEY_WARNING: Final = (
    '299 paytabs-guard "No Idempotency-Key: a retry of this request may repeat it (a second '
    'charge or refund); send a unique Idempotency-Key, such as a random UUID, with every write"'
)
MERCHANT_SCOPE: Final = "merchant"
_FIRST_POLL: Final = 0.02
_MAX_POLL: Final = 0.25


def scope_of(client: ApiClient) -> str:
    """The scope ``client``'s keys live in: the merchant's, whichever of its keys sent them
    (a key id here would make a retry after a key rotation a second charge)."""
    del client  # one merchant per service; the client is the seam for more than one
    return MERCHANT_SCOPE


def fingerprint(method: str, path: str, body: Any) -> str:  # a JSON-ready body
    """A hash of the request's meaning: method, path and the canonical JSON of the body."""
    if isinstance(body, dict) and isinstance(amount := body.get("amount"), str):
        body = {**body, "amount": canonical_amount(amount)}
    canonical = json.dumps(
        {"method": method.upper(), "path": path, "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def canonical_amount(amount: str) -> str:
    """A validated decimal string (digits, then optionally a point and digits) written one way
    per value: no leading zeros, no trailing zeros past the second decimal, at least two
    decimals. Two places, not the currency's, because a refund need not name its currency;
    and two because that is how nearly every client writes an amount, so keys stored before
    this rule (their fingerprints over the amount as sent) still match their retries."""
    whole, _, fraction = amount.partition(".")
    return f"{whole.lstrip('0') or '0'}.{fraction.rstrip('0').ljust(2, '0')}"


def key_mismatch() -> Problem:
    return Problem(
        "idempotency_key_reused",
        "Idempotency-Key reused",
        422,
        "This Idempotency-Key was used for a different request; use a new key for a new operation.",
    )


def key_interrupted() -> Problem:
    return Problem(
        "idempotency_key_interrupted",
        "Request interrupted",
        409,
        "The request that holds this Idempotency-Key stopped without an answer (its worker "
        "stopped) and may have reached PayTabs, so it is not run again under this key. Look "
        "for its effect (GET /payments/v2/{id}, or GET /payments/v2 for a new payment); if it "
        "did not happen, send the request with a new Idempotency-Key.",
    )


def key_in_flight() -> Problem:
    return Problem(
        "idempotency_key_in_flight",
        "Request still in progress",
        409,
        "A request with this Idempotency-Key is still being processed; retry in a moment with "
        "the same key to get its answer.",
        headers={"Retry-After": "1"},
    )


log = get_logger(__name__)

#: Failures after which a write that left for PayTabs is known to have taken no effect anyone
#: can pay or lose by: nothing reached PayTabs, or the page it opened was never handed out
#: (its payment failed). Their keys are released as before a write.
NOTHING_TO_REPEAT: Final = (GatewayNotReached, GatewayReferenceTaken)


def sent_and_unsettled(payment_id: str | None, why: str) -> Problem:
    """The answer for a write that left for PayTabs and then failed here (``why``)."""
    where = f"GET /payments/v2/{payment_id}" if payment_id else "GET /payments/v2"
    return Problem(
        "gateway_outcome_unknown",
        "PayTabs gave no clear answer",
        502,
        f"This request reached PayTabs and was then interrupted ({why}), so it may have "
        f"happened. {where} shows it once PayTabs' callback or reconciliation settles it, "
        "within minutes. This Idempotency-Key replays this answer: send the request again "
        "with a new key only if the payment shows it did not happen.",
        extensions={"payment_id": payment_id} if payment_id else {},
    )


async def keep_unsettled(
    request: Request, container: Container, scope: str, key: str, payment_id: str | None, why: str
) -> Response:
    """Answer a write that may have taken effect at PayTabs, and keep that answer for its key
    instead of releasing it. If the database cannot take it now the key stays claimed, and
    repeats wait as for a request in flight."""
    response = problem_response(sent_and_unsettled(payment_id, why), request_id_of(request))
    stored = StoredResponse(response.status_code, bytes(response.body).decode(), payment_id)
    container.metrics.idempotency.labels("kept_unsettled").inc()
    try:
        await container.idempotency.complete(scope, key, stored, now=container.service.now())
    except Exception:
        log.warning("idempotency key kept in flight: its answer could not be stored", exc_info=True)
    return response


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "the request was cancelled: a shutdown, or the client went away"
    if isinstance(error, Exception) and (problem := problem_for(error)) is not None:
        return problem.title.lower()
    return "an unexpected error"


def replay(stored: StoredResponse) -> Response:
    """The stored first answer, marked as a replay."""
    media_type = PROBLEM_MEDIA_TYPE if stored.status_code >= 400 else "application/json"
    headers = {REPLAYED_HEADER: "true"}
    if stored.resource_id and tracing.ENABLED:
        # The request is about the stored payment: a create's retry had already noted the
        # payment it began to insert before finding its key taken, which was rolled back.
        tracing.note_payment(stored.resource_id)
    if stored.resource_id:
        headers[PAYMENT_ID_HEADER] = stored.resource_id  # as the first answer named it
        if stored.status_code in (201, 202):
            headers["Location"] = f"/payments/v2/{stored.resource_id}"
    return Response(
        stored.body.encode("utf-8"),
        status_code=stored.status_code,
        media_type=media_type,
        headers=headers,
    )


Operation = Callable[[], Awaitable[Response]]


async def stored_answer(
    request: Request,
    container: Container,
    client: ApiClient,
    key: str,
    body: Any,
    *,
    wait_seconds: float,
) -> Response | None:
    """The answer ``key`` holds for this request (a replay, or the 422 for another request
    under the key), read without claiming the key; None when it holds none (unused, expired,
    or released by a request that failed).

    A key still in flight is waited for as :func:`run_idempotent` waits: its answer once it
    comes, 409 if it has not come within ``wait_seconds``. The caller is a create the breaker
    turned away; under a key in flight a payment is on its way to PayTabs, and "nothing was
    sent" would be untrue."""
    print_ = fingerprint(request.method, request.url.path, body)
    scope = scope_of(client)
    deadline = time.monotonic() + wait_seconds
    delay = _FIRST_POLL
    while True:
        found = await container.idempotency.find(scope, key, print_, now=container.service.now())
        if found is None:
            return None
        answer = _answer_for_taken(request, container, found, deadline)
        if answer is not None:
            return answer
        delay = await _wait_for_the_owner(delay, deadline)


async def run_idempotent(
    request: Request,
    container: Container,
    client: ApiClient,
    key: str | None,
    body: Any,  # JSON-ready
    operation: Operation,
    *,
    wait_seconds: float,
    resource_id: Callable[[Response], str | None] = lambda _: None,
) -> Response:
    """Run ``operation`` at most once per key of the merchant; see the module docstring."""
    metrics = container.metrics
    if key is None:
        metrics.idempotency.labels("missing").inc()
        response = await operation()
        response.headers["Warning"] = MISSING_KEY_WARNING
        return response
    store = container.idempotency
    now = container.service.now
    print_ = fingerprint(request.method, request.url.path, body)
    scope = scope_of(client)
    deadline = time.monotonic() + wait_seconds
    delay = _FIRST_POLL
    while True:
        claim = await store.claim(scope, key, print_, now=now(), ttl_seconds=TTL_SECONDS)
        if claim.status is ClaimStatus.NEW:
            metrics.idempotency.labels("new").inc()
            break
        answer = _answer_for_taken(request, container, claim, deadline)
        if answer is not None:
            return answer
        # Another request owns the key (maybe on another instance): wait for its answer.
        delay = await _wait_for_the_owner(delay, deadline)

    payment_id = request.path_params.get("payment_id")
    with watched_writes() as sent:
        try:
            response = await operation()
        except Exception as error:
            problem = problem_for(error)
            if problem is None or problem.status >= 500 or problem.transient:
                if sent and not isinstance(error, NOTHING_TO_REPEAT):
                    return await keep_unsettled(
                        request, container, scope, key, payment_id, _reason(error)
                    )
                await store.release(scope, key)
                raise
            response = problem_response(problem, request_id_of(request))
        except BaseException as error:
            # Cancelled (shutdown, disconnect): free the key, or retries would get 409s; but
            # not once a write left for PayTabs.
            if sent:
                await asyncio.shield(
                    keep_unsettled(request, container, scope, key, payment_id, _reason(error))
                )
            else:
                await asyncio.shield(store.release(scope, key))
            raise
    if response.status_code >= 500:
        if sent:
            return await keep_unsettled(
                request, container, scope, key, payment_id, f"answered {response.status_code}"
            )
        await store.release(scope, key)
        return response
    stored = StoredResponse(
        status_code=response.status_code,
        body=bytes(response.body).decode("utf-8"),
        resource_id=resource_id(response),
    )
    await store.complete(scope, key, stored, now=now())
    return response


async def run_idempotent_create(
    request: Request,
    container: Container,
    client: ApiClient,
    key: str | None,
    body: Any,  # JSON-ready
    create: Callable[[IdempotentCreate | None], Awaitable[Payment]],
    respond: Callable[[Payment], Response],
    *,
    wait_seconds: float,
    resource_id: Callable[[Response], str | None] = lambda _: None,
) -> Response:
    """:func:`run_idempotent` for a create, with the key handled inside the create's own two
    transactions (claimed with the payment's insert, completed with PayTabs' answer) instead of
    two more of its own. Same answers, same races: the claim is the same upsert."""
    if key is None:
        container.metrics.idempotency.labels("missing").inc()
        response = respond(await create(None))
        response.headers["Warning"] = MISSING_KEY_WARNING
        return response
    store = container.idempotency
    metrics = container.metrics
    print_ = fingerprint(request.method, request.url.path, body)
    scope = scope_of(client)
    answers: list[Response] = []

    def answer(payment: Payment) -> StoredResponse:
        response = respond(payment)
        answers.append(response)
        return _stored(response, resource_id)

    def claimed_new() -> None:
        metrics.idempotency.labels("new").inc()

    deadline = time.monotonic() + wait_seconds
    delay = _FIRST_POLL
    while True:
        idempotency = IdempotentCreate(scope, key, print_, TTL_SECONDS, answer, claimed_new)
        try:
            with watched_writes() as sent:
                payment = await create(idempotency)
        except KeyTaken as taken:
            early = _answer_for_taken(request, container, taken.claim, deadline)
            if early is not None:
                return early
            # Another request owns the key (maybe on another instance): wait for its answer.
            delay = await _wait_for_the_owner(delay, deadline)
            continue
        except Exception as error:
            if not idempotency.claimed or idempotency.completed:
                raise  # the claim rolled back with the payment's insert, or the answer is stored
            problem = problem_for(error)
            if problem is None or problem.status >= 500 or problem.transient:
                if sent and not isinstance(error, NOTHING_TO_REPEAT):
                    why = _reason(error)
                    return await keep_unsettled(
                        request, container, scope, key, idempotency.payment_id, why
                    )
                await store.release(scope, key)
                raise
            response = problem_response(problem, request_id_of(request))
            stored = _stored(response, resource_id)
            await store.complete(scope, key, stored, now=container.service.now())
            return response
        except BaseException as error:
            # Cancelled (shutdown, disconnect): free the key even so, or retries would get 409s;
            # but not once a write left for PayTabs (a charge may have been made).
            if idempotency.claimed and not idempotency.completed:
                if sent:
                    kept = keep_unsettled(
                        request, container, scope, key, idempotency.payment_id, _reason(error)
                    )
                    await asyncio.shield(kept)
                else:
                    await asyncio.shield(store.release(scope, key))
            raise
        return answers[-1] if answers and idempotency.completed else respond(payment)


async def _wait_for_the_owner(delay: float, deadline: float) -> float:
    """Sleep ``delay`` (never past ``deadline``) before asking about a key another request
    holds again; returns the next delay (doubling, up to ``_MAX_POLL``)."""
    await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
    return min(delay * 2, _MAX_POLL)


def _answer_for_taken(
    request: Request, container: Container, claim: IdempotencyClaim, deadline: float
) -> Response | None:
    """The answer for a key another request holds, or None to wait and try again."""
    metrics_label = None
    response: Response | None = None
    if claim.status is ClaimStatus.COMPLETED and claim.response is not None:
        metrics_label, response = "replayed", replay(claim.response)
    elif claim.status is ClaimStatus.MISMATCH:
        metrics_label = "mismatch"
        response = problem_response(key_mismatch(), request_id_of(request))
    elif claim.status is ClaimStatus.INTERRUPTED:
        metrics_label = "interrupted"
        response = problem_response(key_interrupted(), request_id_of(request))
    elif time.monotonic() >= deadline:
        metrics_label = "in_flight"
        response = problem_response(key_in_flight(), request_id_of(request))
    if metrics_label is not None:
        container.metrics.idempotency.labels(metrics_label).inc()
    return response


def _stored(response: Response, resource_id: Callable[[Response], str | None]) -> StoredResponse:
    return StoredResponse(
        status_code=response.status_code,
        body=bytes(response.body).decode("utf-8"),
        resource_id=resource_id(response),
    )
