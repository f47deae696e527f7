"""RFC 9457 problem details, and the catalogue of webhook rejections.

A :class:`Problem` is raised (or returned) by a route and rendered by :func:`problem_response`
as ``application/problem+json``. Every ``detail`` says what the sender should fix.

The catalogue builds details from fixed text only. A rejected request may be hostile, so nothing
it sent is echoed back: not the body, not a signature, not a header value, not its address; and
nothing of ours leaks either (secrets, which key was tried). Reasons from the verifiers are shown
only when they are in the fixed tables below.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from paytabs_guard.observability import redact_card_numbers

PROBLEM_TYPE_BASE: Final = "https://paytabs-guard.dev/problems/"
MEDIA_TYPE: Final = "application/problem+json"
_STANDARD_MEMBERS: Final = frozenset({"type", "title", "status", "detail", "instance"})


class Problem(Exception):
    """One RFC 9457 problem: ``type`` URI, ``title``, ``status``, ``detail`` and extensions.

    ``slug`` names the problem type (``invalid_signature`` becomes
    ``https://paytabs-guard.dev/problems/invalid-signature``); ``headers`` go on the response,
    not in the body (``Retry-After``, ``Allow``).
    """

    def __init__(
        self,
        slug: str,
        title: str,
        status: int,
        detail: str,
        *,
        instance: str | None = None,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        transient: bool = False,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"a problem has a 4xx or 5xx status, not {status}")
        clash = _STANDARD_MEMBERS.intersection(extensions or {})
        if clash:
            raise ValueError(f"extension members may not redefine {sorted(clash)}")
        super().__init__(f"{status} {title}: {detail}")
        self.type = PROBLEM_TYPE_BASE + slug.replace("_", "-")
        self.title = title
        self.status = status
        self.detail = detail
        self.instance = instance
        self.extensions: dict[str, Any] = dict(extensions or {})
        self.headers: dict[str, str] = dict(headers or {})
        #: A refusal of this moment (a concurrent change, a follow-up still waiting for
        #: PayTabs) that tells the client to send the request again: never kept as the answer
        #: of its Idempotency-Key, or the retry it asks for would replay it.
        self.transient = transient

    def to_dict(self) -> dict[str, Any]:
        """The JSON members, standard ones first."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.instance is not None:
            body["instance"] = self.instance
        body.update(self.extensions)
        return body


PAYMENT_ID_HEADER: Final = "X-Payment-Id"
"""The payment a write's answer is about (a created payment, a kept failed attempt)."""


def problem_response(problem: Problem, request_id: str | None = None) -> Response:
    """``problem`` as an ``application/problem+json`` response; ``request_id`` is echoed."""
    body = problem.to_dict()
    if request_id is not None:
        body["request_id"] = request_id
    headers = {**problem.headers, "Cache-Control": "no-store"}
    payment_id = problem.extensions.get("payment_id")
    if isinstance(payment_id, str):
        # A problem that kept a payment (a failed attempt, a charge refused) names it in a
        # header too, as a create's answer does: a client need not parse the body to find it.
        headers.setdefault(PAYMENT_ID_HEADER, payment_id)
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


async def problem_handler(request: Request, exc: Exception) -> Response:
    """A Starlette/FastAPI exception handler for :class:`Problem` (``request.state.request_id``)."""
    if not isinstance(exc, Problem):
        raise TypeError(f"problem_handler handles Problem, not {type(exc).__name__}") from exc
    request_id = getattr(request.state, "request_id", None)
    return problem_response(exc, request_id if isinstance(request_id, str) else None)


# --- the webhook receiver's rejections --------------------------------------------------------

_SIGNATURE_DETAILS: Final[Mapping[str, str]] = {
    # Standard Webhooks (adapters.webhooks.standard.Reason)
    "missing_header": "Send the webhook-id, webhook-timestamp and webhook-signature headers.",
    "duplicate_header": "Send each webhook-* header once.",
    "malformed_id": "Send webhook-id as 1-256 printable ASCII characters without '.'.",
    "malformed_timestamp": "Send webhook-timestamp as integer Unix seconds.",
    "malformed_signature": "Send webhook-signature as space-separated 'v1,<base64>' tokens.",
    "timestamp_too_old": "The timestamp is outside the tolerance: sign again with the current "
    "time (and check the sender's clock).",
    "timestamp_in_future": "The timestamp is ahead of our clock beyond the tolerance: check the "
    "sender's clock.",
    "no_supported_signature": "Include a 'v1' (HMAC-SHA256) signature.",
    "no_matching_signature": "No signature matches: sign '{id}.{timestamp}.{raw body}' with a "
    "current secret, and send the body bytes exactly as signed.",
    # PayTabs callbacks (adapters.paytabs.signature.InvalidSignature)
    "missing": "Send the Signature header: HMAC-SHA256 of the raw body, lower-case hex.",
    "malformed": "Send the Signature header as 64 hexadecimal characters.",
    "mismatch": "The signature does not match: sign the raw body with the profile's current "
    "server key, and send the body bytes exactly as signed.",
}

_PAYLOAD_DETAILS: Final[Mapping[str, str]] = {
    # entrypoints.api.strict_json.Reason
    "invalid_utf8": "Encode the body as UTF-8.",
    "bom": "Remove the byte order mark from the start of the body.",
    "invalid_json": "Send one well-formed JSON document.",
    "duplicate_key": "Send each key of an object once.",
    "non_finite_number": "Send finite numbers only (no NaN, Infinity or out-of-range exponents).",
    "number_too_long": "Shorten the number literals.",
    "too_deep": "Nest objects and arrays less deeply.",
    "string_too_long": "Shorten the strings.",
    "too_many_keys": "Send fewer members per object.",
    "lone_surrogate": "Escape characters outside the BMP as a full surrogate pair.",
    "nul_character": "Remove the NUL characters (\\u0000) from the strings: they cannot be stored.",
    "not_an_object": "Send a JSON object at the top level.",
    # entrypoints.api.webhook_receiver
    "money_not_string": 'Send cart_amount and tran_total as decimal strings such as "12.50", '
    "never as JSON numbers.",
}


def payload_too_large(limit: int) -> Problem:
    """413: the body (declared or streamed) exceeds ``limit`` bytes."""
    return Problem(
        "payload_too_large",
        "Payload too large",
        413,
        f"Send a body of at most {limit} bytes.",
        extensions={"max_bytes": limit},
    )


def unsupported_media_type(accepted: Sequence[str] = ("application/json",)) -> Problem:
    """415: the Content-Type is missing or not one of ``accepted``."""
    listed = ", ".join(accepted)
    return Problem(
        "unsupported_media_type",
        "Unsupported media type",
        415,
        f"Send the body with Content-Type {listed} (charset=utf-8 is allowed).",
        extensions={"accepted": list(accepted)},
        headers={"Accept-Post": listed},
    )


def unsupported_content_encoding() -> Problem:
    """415: the body is compressed (RFC 9110 §15.5.16); the API reads bodies as sent."""
    return Problem(
        "unsupported_media_type",
        "Unsupported content encoding",
        415,
        "Send the body uncompressed: no Content-Encoding (bodies are small), and no "
        "Transfer-Encoding but chunked.",
        headers={"Accept-Encoding": "identity"},
    )


def client_closed_request() -> Problem:
    """499 (nginx's "client closed request"): the client left before its body came whole.
    Nobody reads it; it is what the access line and the metrics count."""
    return Problem("client_closed_request", "Client closed request", 499, "")


def body_too_slow(seconds: float) -> Problem:
    """408: the body did not arrive whole in time; the connection is closed after this."""
    return Problem(
        "request_timeout",
        "Request timeout",
        408,
        f"Send the whole body within {seconds:g} seconds of the request's headers.",
        headers={"Connection": "close"},
    )


def not_found() -> Problem:
    """404: nothing at this URL."""
    return Problem(
        "not_found",
        "Not found",
        404,
        "There is nothing at this URL; the API reference is at /docs.",
    )


def trailing_slash(path: str) -> Problem:
    """404: an API path sent with a trailing slash; ``path`` is the same without it, named
    only when short and printable (it is the client's own input)."""
    named = f" to {redact_card_numbers(path)}" if len(path) <= 200 and path.isprintable() else ""
    return Problem(
        "not_found",
        "Not found",
        404,
        f"There is nothing at this URL; send the request{named} without the trailing slash.",
    )


def method_not_allowed(allowed: Sequence[str] = ("POST",)) -> Problem:
    """405: the endpoint only takes ``allowed`` methods."""
    listed = ", ".join(allowed)
    return Problem(
        "method_not_allowed",
        "Method not allowed",
        405,
        f"This endpoint accepts only {listed}; send the request with "
        f"{'that method' if len(allowed) == 1 else 'one of those'}.",
        headers={"Allow": listed},
    )


def invalid_content_length() -> Problem:
    """400: Content-Length is malformed or repeated with different values."""
    return Problem(
        "invalid_content_length",
        "Invalid Content-Length",
        400,
        "Send Content-Length once, as a non-negative decimal integer, or use chunked encoding.",
    )


def repeated_content_type() -> Problem:
    """400: two or more Content-Type headers. Which one describes the body? This service read
    the first, a proxy or another reader may take the last: one header, never picked from."""
    return Problem(
        "invalid_content_type",
        "Invalid Content-Type",
        400,
        "Send one Content-Type header, not several: the body's media type, once.",
    )


def nul_in_url() -> Problem:
    """400: the path or query string holds a NUL character (``%00``)."""
    return Problem(
        "invalid_url",
        "Invalid URL",
        400,
        "Remove the NUL character (%00) from the path and the query string.",
    )


def disguised_path() -> Problem:
    """400: the path percent-encodes a character that never needs it (a letter, a digit,
    ``-._~``) or a ``/``: the same URL in disguise, which path rules at the edge miss."""
    return Problem(
        "invalid_url",
        "Invalid URL",
        400,
        "Send the path as it is: letters, digits, '-', '.', '_', '~' and '/' must not be "
        "percent-encoded (%2F, %6D, ...).",
    )


def absolute_form() -> Problem:
    """400: the request target is an absolute URL (``GET http://host/metrics``), which only a
    proxy takes; path rules at the edge miss it, as they miss a path in disguise."""
    return Problem(
        "invalid_url",
        "Invalid URL",
        400,
        "Send the request target as a path (GET /payments/v2 HTTP/1.1, with the host in the "
        "Host header), not as an absolute URL: this service is not a proxy.",
    )


def fragment_in_target() -> Problem:
    """400: the request target's path carries a fragment (``GET /metrics#x``), which HTTP
    does not allow there; an edge that reads it as part of the path misses its rules."""
    return Problem(
        "invalid_url",
        "Invalid URL",
        400,
        "Leave the fragment ('#' and what follows) out of the request target: send the path "
        "and the query only.",
    )


def bad_host() -> Problem:
    """400: an HTTP/1.1 request without a ``Host`` header, or any request with two (RFC 9112,
    3.2): a proxy and this service could each pick another one."""
    return Problem(
        "invalid_host",
        "Invalid Host header",
        400,
        "Send exactly one Host header (HTTP/1.1 requires it).",
    )


def forbidden_source() -> Problem:
    """403: the client address is not on the allowlist, or cannot be determined."""
    return Problem(
        "forbidden_source",
        "Source not allowed",
        403,
        "This endpoint accepts deliveries only from the sender's registered addresses; "
        "ask the operator to allow yours.",
    )


def invalid_signature(reason: str) -> Problem:
    """401: the delivery is not authentic or not fresh; ``reason`` from a verifier."""
    detail = _SIGNATURE_DETAILS.get(reason)
    return Problem(
        "invalid_signature",
        "Invalid webhook signature",
        401,
        detail or "Sign the delivery as the endpoint's scheme requires.",
        extensions={"reason": reason if detail else "invalid"},
        # RFC 9110 §15.5.2: a 401 names a scheme. This is the signed-request scheme in use.
        headers={"WWW-Authenticate": 'Signature realm="webhooks"'},
    )


def invalid_payload(reason: str) -> Problem:
    """400: a body is not acceptable JSON (a verified callback's, or a merchant API request's);
    ``reason`` from :mod:`.strict_json`."""
    detail = _PAYLOAD_DETAILS.get(reason)
    return Problem(
        "invalid_payload",
        "Invalid payload",
        400,
        detail or "Send a body that matches the documented schema.",
        extensions={"reason": reason if detail else "invalid"},
    )


def rate_limited(retry_after_seconds: float) -> Problem:
    """429: too many failed verifications from this source; retry after the block expires."""
    return _blocked(
        "rate_limited",
        "Too many failed deliveries",
        "Too many deliveries from this source failed verification. Fix the signing, then retry",
        retry_after_seconds,
    )


def too_many_wrong_keys(retry_after_seconds: float) -> Problem:
    """429: this source sent too many wrong API keys (key_guesses.py)."""
    return _blocked(
        "too_many_wrong_keys",
        "Too many wrong API keys",
        "Too many requests from this address sent a wrong API key. Check API_KEYS on the "
        "service and the key your client sends, then retry",
        retry_after_seconds,
    )


def _blocked(slug: str, title: str, what_to_do: str, retry_after_seconds: float) -> Problem:
    seconds = max(1, math.ceil(retry_after_seconds))
    return Problem(
        slug,
        title,
        429,
        f"{what_to_do} after {seconds} s.",
        extensions={"retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )
