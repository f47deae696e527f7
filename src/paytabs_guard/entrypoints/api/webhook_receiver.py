"""The PayTabs callback (IPN) receiver: every check, in a fixed order, cheapest first.

1. body size (413; declared ``Content-Length`` and streamed bytes both counted)
2. content type ``application/json`` (415), sent once (400)
3. source address on PAYTABS_IP_WHITELIST, read through TRUSTED_PROXIES only (403)
4. signature on the raw bytes (401): PayTabs' ``Signature`` header with every configured key,
   or a Standard Webhooks delivery (``webhook-signature``) with a ``whsec_`` secret and the
   timestamp tolerance both ways. Failures count per source; a source with too many gets 429.
   A valid signature is never throttled.
5. strict payload (400): strict JSON, money as strings, then PayTabs' transaction shape, then
   domain values
6. business checks and dedupe, in ``PaymentService.apply_callback``: a result that is not
   this payment's is quarantined (200, counted, logged as a security event) and leaves the
   dedupe key free for the genuine result; a repeat of an applied result, or a byte-for-byte
   repeat of a quarantined one, is a duplicate (200, no second effect or alert); the inbox row
   commits with the effect.

Answers that make PayTabs retry (503): no payment for the result yet, a follow-up before the
payment it follows, and any storage failure. Nothing is acknowledged and dropped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from paytabs_guard import tracing
from paytabs_guard.bootstrap import STORAGE_CONFLICTS, Container
from paytabs_guard.domain import GatewayResult, OutcomeKind
from paytabs_guard.observability import get_logger
from paytabs_guard.service.callbacks import InvalidCallbackSignature, UnreadableCallback
from paytabs_guard.service.payments import UnknownGatewayTransaction

from . import problems
from .body_limit import (
    BodyTooLarge,
    BodyTooSlow,
    InvalidContentLength,
    coded,
    read_body_limited,
)
from .client_address import IPAddress, client_ip, ip_allowed
from .errors import request_id_of
from .middleware import add_to_access_line
from .problems import Problem, problem_response
from .rate_limit import FailureLimiter, source_key
from .strict_json import InvalidJson, parse_strict_json

ENDPOINT: Final = "ipn"
log = get_logger("paytabs_guard.webhooks")


class Rejected(Exception):
    """A delivery refused before it reached the payment; ``outcome`` is the metric label."""

    def __init__(self, outcome: str, problem: Problem, **details: object) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.problem = problem
        self.details = details


def media_type_is(header: str | None, expected: str) -> bool:
    """Whether a Content-Type names ``expected``, with at most a UTF-8 charset parameter."""
    if header is None:
        return False
    media, *params = (part.strip() for part in header.split(";"))
    if media.lower() != expected:
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


#: The outcome of a request whose sender left mid-body: answered 499 (nobody reads it), so the
#: access line and the request counter show a dropped connection, not a refused request.
CLIENT_LEFT: Final = "client_disconnected"


async def read_body(request: Request, limit: int, within: float) -> bytes:
    """The raw body within ``limit`` bytes and ``within`` seconds, or a rejection (413 / 408
    / 400)."""
    try:
        return await read_body_limited(request, limit, within=within)
    except BodyTooLarge:
        raise Rejected("rejected_size", problems.payload_too_large(limit)) from None
    except BodyTooSlow as slow:
        raise Rejected("rejected_slow", problems.body_too_slow(slow.seconds)) from None
    except InvalidContentLength:
        raise Rejected("rejected_size", problems.invalid_content_length()) from None
    except ClientDisconnect:
        raise Rejected(CLIENT_LEFT, problems.client_closed_request()) from None


def schema_problem(detail: str) -> Problem:
    return Problem(
        "invalid_payload",
        "Invalid payload",
        400,
        detail,
        extensions={"reason": "schema"},
    )


_SCHEMA_DETAIL: Final = (
    "Send a PayTabs transaction object: tran_ref, cart_id, cart_currency, cart_amount and "
    "tran_type as strings, profile_id as the profile's number, and "
    "payment_result.response_status as one of A, H, P, V, E, D, X, C."
)


@dataclass(frozen=True, slots=True)
class VerifiedCallback:
    """A verified, parsed callback and what we know about where it came from."""

    result: GatewayResult
    client: IPAddress | None
    body_sha256: str

    @property
    def body_sha(self) -> str:
        """A short form of the body's hash, for log lines."""
        return self.body_sha256[:16]


class WebhookReceiver:
    """Runs the checks of the module docstring for one ``POST /payments/v2/webhook``."""

    def __init__(
        self, container: Container, limiter: FailureLimiter, *, body_read_seconds: float = 30.0
    ) -> None:
        self._container = container
        self._body_read_seconds = body_read_seconds
        self._callbacks = container.callbacks
        self._service = container.service
        self._limiter = limiter

    async def receive(self, request: Request) -> Response:
        with tracing.span("PayTabs callback") as span:  # tracing.NO_SPAN while off
            response, outcome = await self._receive(request)
            span.set("paytabs_guard.callback.outcome", outcome)
            return response

    async def _receive(self, request: Request) -> tuple[Response, str]:
        started = time.perf_counter()
        settings = self._container.settings
        ip = client_ip(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            settings.trusted_proxies,
        )
        try:
            body = await read_body(
                request, settings.webhook_max_body_bytes, self._body_read_seconds
            )
            if len(request.headers.getlist("content-type")) > 1:
                # Only the first was checked: "application/json" then "text/plain" passed, and
                # a proxy or a log that reads the last one saw a text body.
                raise Rejected("rejected_content_type", problems.repeated_content_type())
            if not media_type_is(request.headers.get("content-type"), "application/json"):
                raise Rejected("rejected_content_type", problems.unsupported_media_type())
            headers = request.headers
            if coded(headers.getlist("content-encoding"), headers.getlist("transfer-encoding")):
                raise Rejected("rejected_content_type", problems.unsupported_content_encoding())
            if not ip_allowed(ip, settings.paytabs_ip_whitelist):
                raise Rejected("rejected_ip", problems.forbidden_source())
            self._verify(request, body, ip)
            delivery = VerifiedCallback(self._parse(body), ip, hashlib.sha256(body).hexdigest())
        except Rejected as rejected:
            self._security_event(rejected, ip)
            self._container.metrics.webhook(
                ENDPOINT, rejected.outcome, time.perf_counter() - started
            )
            response = problem_response(rejected.problem, request_id_of(request))
            return response, rejected.outcome
        response, outcome = await self._apply(delivery, request)
        self._container.metrics.webhook(ENDPOINT, outcome, time.perf_counter() - started)
        return response, outcome

    # ---- 4. signature -------------------------------------------------------------------

    def _verify(self, request: Request, body: bytes, ip: IPAddress | None) -> None:
        try:
            self._callbacks.verify_callback(
                body,
                request.headers,
                request.headers.getlist("signature"),
                now=self._service.now(),
            )
        except InvalidCallbackSignature as failure:
            reason = failure.reason
            key = source_key(ip)
            self._limiter.record_failure(key)
            if self._limiter.is_blocked(key):
                wait = self._limiter.retry_after(key)
                raise Rejected("rate_limited", problems.rate_limited(wait), reason=reason) from None
            raise Rejected(
                "rejected_signature", problems.invalid_signature(reason), reason=reason
            ) from None

    # ---- 5. payload ---------------------------------------------------------------------

    def _parse(self, body: bytes) -> GatewayResult:
        try:
            document = parse_strict_json(body, require_object=True)
        except InvalidJson as error:
            raise Rejected("rejected_schema", problems.invalid_payload(error.reason)) from None
        try:
            return self._callbacks.read_callback(document)
        except UnreadableCallback as unreadable:
            if unreadable.money_as_number:
                problem = problems.invalid_payload("money_not_string")
            elif unreadable.fields:
                wrong = ", ".join(unreadable.fields)
                problem = schema_problem(f"{_SCHEMA_DETAIL} Wrong or missing: {wrong}.")
            else:
                problem = schema_problem(_SCHEMA_DETAIL)
            raise Rejected("rejected_schema", problem) from None

    # ---- 6. business checks, dedupe, apply ----------------------------------------------

    async def _apply(self, delivery: VerifiedCallback, request: Request) -> tuple[Response, str]:
        result = delivery.result
        status = result.status.value if result.status else "-"
        fields = {
            "tran_ref": result.tran_ref,
            "cart_id": result.cart_id,
            "response_status": status,
            "body_sha": delivery.body_sha,
        }
        request_id = request_id_of(request)
        if tracing.ENABLED:
            tracing.annotate("paytabs.tran_ref", result.tran_ref)
            tracing.annotate("paytabs.cart_id", result.cart_id)
            tracing.annotate("paytabs.response_status", status)
        try:
            key = f"paytabs:{result.tran_ref}:{status}"
            payment, outcome = await self._service.apply_callback(
                result,
                dedupe_key=key,
                exact_key=f"{key}:quarantined:{delivery.body_sha256}",
            )
        except UnknownGatewayTransaction:
            log.warning("webhook for an unknown payment; PayTabs will retry", **fields)
            return problem_response(_retry_later("unknown_payment"), request_id), "unknown_payment"
        except STORAGE_CONFLICTS:
            return problem_response(_retry_later("concurrent_update"), request_id), "conflict_retry"
        except Exception:
            log.exception("webhook could not be applied; PayTabs will retry", **fields)
            return problem_response(_retry_later("error"), request_id), "error"

        kind = outcome.kind
        if kind is OutcomeKind.ILLEGAL:
            log.warning("webhook arrived before it can apply; PayTabs will retry",
                        payment_id=payment.id, reason=outcome.reason, **fields)  # fmt: skip
            return problem_response(_retry_later("too_early"), request_id), "too_early"
        if kind is OutcomeKind.QUARANTINED:
            log.warning("security_event", kind="webhook_quarantined", endpoint=ENDPOINT,
                        payment_id=payment.id, reason=outcome.reason,
                        client=str(delivery.client) if delivery.client else None,
                        **fields)  # fmt: skip
        elif kind is OutcomeKind.CONFLICT:
            log.error("payment conflict: PayTabs contradicts a decided payment; review it",
                      payment_id=payment.id, reason=outcome.reason, **fields)  # fmt: skip
        else:
            # Said on the request's access line, not a line of its own (one line per request).
            add_to_access_line(request.scope.setdefault("state", {}), outcome=kind.value,
                               payment_id=payment.id, state=outcome.state.value,
                               **fields)  # fmt: skip
        label = "processed" if kind is OutcomeKind.APPLIED else kind.value
        return _RECEIVED[label](), label

    def _security_event(self, rejected: Rejected, ip: IPAddress | None) -> None:
        if rejected.outcome == CLIENT_LEFT:
            return  # a dropped connection, not an attack: counted in the metrics only
        log.warning(
            "security_event",
            kind="webhook_rejected",
            endpoint=ENDPOINT,
            outcome=rejected.outcome,
            client=str(ip) if ip else None,
            **rejected.details,
        )


def _received(label: str) -> Callable[[], Response]:
    """The acknowledgement for one outcome, its body encoded once (the same bytes
    ``JSONResponse`` would write); a response object is still new per request."""
    body = json.dumps({"received": True, "outcome": label}, separators=(",", ":")).encode()
    return lambda: Response(body, media_type="application/json")


#: An applied result is acknowledged as "processed"; any other outcome by its own name.
_RECEIVED: Final = {kind.value: _received(kind.value) for kind in OutcomeKind} | {
    "processed": _received("processed")
}


def _retry_later(reason: str) -> Problem:
    """503 with Retry-After: PayTabs retries the delivery (it never gets acknowledged and lost)."""
    details = {
        "unknown_payment": "No payment owns this transaction yet; deliver it again later.",
        "concurrent_update": "The payment changed concurrently; deliver it again.",
        "too_early": "This result follows a transaction we have not seen yet; deliver it "
        "again later.",
        "error": "The delivery could not be stored right now; deliver it again later.",
    }
    return Problem(
        "retry_later",
        "Not processed yet",
        503,
        details[reason],
        extensions={"reason": reason},
        headers={"Retry-After": "30"},
    )
