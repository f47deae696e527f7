"""The customer's browser coming back from the PayTabs page (``GET``/``POST /payments/v2/return``).

PayTabs signs the return fields, but they travel through the customer's browser, so they only
*trigger* a query: the state shown is the one PayTabs confirms by query (bounded in time), never
the one in the form. Then the browser is sent (303) to the merchant's ``return_url`` with
``payment_id`` and ``state``, or shown a small result page.

Only PayTabs' own fields are verified: on a GET the URL may carry other parameters, which are
not signed and are ignored. No cookie or session is read or set, so the cross-site POST from
PayTabs needs no CSRF token and cannot be a CSRF vector. A bad signature gets a 400 page and
changes nothing. The page shown without a ``return_url`` is ``return_page``'s (English or
Arabic, mobile first, no external assets).
"""

from __future__ import annotations

import time
from typing import Final
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from paytabs_guard.domain import Payment
from paytabs_guard.domain.gateway_results import RETURN_FIELDS
from paytabs_guard.domain.urls import InvalidUrl, check_http_url
from paytabs_guard.observability import get_logger
from paytabs_guard.service.callbacks import InvalidCallbackSignature

from .return_page import SECURITY_HEADERS, language, problem_page, result_page
from .runtime import Runtime
from .sync import sync_within
from .webhook_receiver import CLIENT_LEFT, Rejected, media_type_is, read_body

ENDPOINT: Final = "return"
log = get_logger("paytabs_guard.webhooks")


class BadReturn(Exception):
    """A return that shows no result; ``reason`` picks the shopper's words (return_page)."""

    def __init__(self, outcome: str, status: int, reason: str = "unreadable") -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.status = status
        self.reason = reason


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise BadReturn("rejected_schema", 400)
        fields[key] = value
    return fields


async def _fields(request: Request, runtime: Runtime) -> dict[str, str]:
    if request.method == "GET":
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k in RETURN_FIELDS]
        return _single_values(pairs)
    try:
        limit = runtime.container.settings.webhook_max_body_bytes
        body = await read_body(request, limit, runtime.options.body_read_seconds)
    except Rejected as rejected:
        raise BadReturn(rejected.outcome, rejected.problem.status) from None
    if len(request.headers.getlist("content-type")) > 1:
        raise BadReturn("rejected_content_type", 400)  # only the first would be checked
    content_type = request.headers.get("content-type")
    if not media_type_is(content_type, "application/x-www-form-urlencoded"):
        raise BadReturn("rejected_content_type", 415)
    try:
        text = body.decode("utf-8")
        return _single_values(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except (UnicodeDecodeError, ValueError):
        raise BadReturn("rejected_schema", 400) from None


def redirect_target(return_url: str, payment: Payment) -> str:
    """``return_url`` with ``payment_id`` and ``state`` added to its query. Raises InvalidUrl
    for a URL no browser could follow (one stored before creates checked it as they do now)."""
    parts = urlsplit(check_http_url(return_url))
    # The merchant's own query stays as written, less any payment_id or state of its own: two
    # of each would leave the merchant's page to pick one (a URL's duplicate key).
    kept = [item for item in parts.query.split("&") if item and _key(item) not in _OURS]
    ours = urlencode({"payment_id": payment.id, "state": payment.state.value})
    netloc = parts.netloc
    if not netloc.isascii() and parts.hostname:
        # An internationalised host as its ASCII (punycode) name: percent-encoded, as the
        # redirect would otherwise send it, no browser finds it.
        host = parts.hostname.encode("idna").decode("ascii")
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, query="&".join([*kept, ours])))


_OURS: Final = frozenset({"payment_id", "state"})


def _key(item: str) -> str:
    return unquote_plus(item.partition("=")[0])


async def handle_return(request: Request, runtime: Runtime) -> Response:
    """Verify, look up, confirm by query (bounded), then redirect or show the result."""
    started = time.perf_counter()
    container = runtime.container
    service = container.service
    lang = language(request.headers.get("accept-language"))
    try:
        fields = await _fields(request, runtime)
        try:
            container.callbacks.verify_return(fields)
        except InvalidCallbackSignature:
            # Opened directly (no PayTabs fields at all) is a shopper, not an attack: say there
            # is nothing to show. Either way nothing about signatures is told to the browser.
            reason = "nothing" if not fields else "unreadable"
            raise BadReturn("rejected_signature", 400, reason) from None
        payment = await service.find_by_gateway_reference(
            cart_id=fields.get("cartId"), tran_ref=fields.get("tranRef")
        )
        if payment is None:
            raise BadReturn("unknown_payment", 404, "unknown")
    except BadReturn as bad:
        if bad.outcome != CLIENT_LEFT:  # a dropped connection is no attack
            log.warning("security_event", kind="return_rejected", endpoint=ENDPOINT,
                        outcome=bad.outcome)  # fmt: skip
        container.metrics.webhook(ENDPOINT, bad.outcome, time.perf_counter() - started)
        return problem_page(lang, bad.reason, bad.status)

    synced = await sync_within(runtime, service, payment.id)
    payment = synced.payment
    outcome = "confirmed" if synced.confirmed else "unconfirmed"
    container.metrics.webhook(ENDPOINT, outcome, time.perf_counter() - started)
    log.info("browser return", payment_id=payment.id, state=payment.state.value, outcome=outcome)
    if payment.return_url:
        try:
            target = redirect_target(payment.return_url, payment)
        except InvalidUrl as error:
            # The customer has paid: show them the result here rather than fail their return.
            log.warning("return_url unusable, result page shown", payment_id=payment.id,
                        reason=str(error))  # fmt: skip
        else:
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    return result_page(lang, payment)
