"""The customer's browser coming back from the PayTabs page (``GET``/``POST /payments/v2/return``).

PayTabs signs the return fields, but they travel through the customer's browser, so they only
*trigger* a query: the state shown is the one PayTabs confirms by query (bounded in time), never
the one in the form. Then the browser is sent (303) to the merchant's ``return_url`` with
``payment_id`` and ``state``, or shown a small result page.

Only PayTabs' own fields are verified: on a GET the URL may carry other parameters, which are
not signed and are ignored. No cookie or session is read or set, so the cross-site POST from
PayTabs needs no CSRF token and cannot be a CSRF vector. A bad signature gets a 400 page and
changes nothing.
"""

from __future__ import annotations

import html
import time
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from paytabs_guard.adapters.paytabs.signature import InvalidSignature, verify_return
from paytabs_guard.domain import Payment, PaymentState
from paytabs_guard.observability import get_logger
from paytabs_guard.service.queries import find_by_gateway_reference

from .runtime import Runtime
from .sync import sync_within
from .webhook_receiver import Rejected, media_type_is, read_body

ENDPOINT: Final = "return"
PAYTABS_FIELDS: Final = frozenset(
    {
        "acquirerMessage",
        "acquirerRRN",
        "cartId",
        "customerEmail",
        "respCode",
        "respMessage",
        "respStatus",
        "signature",
        "token",
        "tranRef",
    }
)
_SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
_MESSAGES: Final = {
    PaymentState.COMPLETED: "Payment received. Thank you!",
    PaymentState.AUTHORIZED: "Payment authorised. Thank you!",
    PaymentState.FAILED: "The payment did not go through. No money was taken.",
    PaymentState.CANCELLED: "The payment was cancelled. No money was taken.",
    PaymentState.EXPIRED: "The payment page expired. No money was taken.",
}
log = get_logger("paytabs_guard.webhooks")


class BadReturn(Exception):
    def __init__(self, outcome: str, status: int, message: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.status = status
        self.message = message


def page(title: str, message: str, status: int = 200) -> HTMLResponse:
    """A minimal page; everything interpolated is escaped."""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise BadReturn("rejected_schema", 400, "The return carried a field twice.")
        fields[key] = value
    return fields


async def _fields(request: Request, runtime: Runtime) -> dict[str, str]:
    if request.method == "GET":
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k in PAYTABS_FIELDS]
        return _single_values(pairs)
    try:
        body = await read_body(request, runtime.container.settings.webhook_max_body_bytes)
    except Rejected as rejected:
        raise BadReturn(
            rejected.outcome, rejected.problem.status, "The form is too large."
        ) from None
    content_type = request.headers.get("content-type")
    if not media_type_is(content_type, "application/x-www-form-urlencoded"):
        raise BadReturn("rejected_content_type", 415, "Send the form url-encoded.")
    try:
        text = body.decode("utf-8")
        return _single_values(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except (UnicodeDecodeError, ValueError):
        raise BadReturn("rejected_schema", 400, "The form could not be read.") from None


def redirect_target(return_url: str, payment: Payment) -> str:
    """``return_url`` with ``payment_id`` and ``state`` added to its query."""
    separator = "&" if urlsplit(return_url).query else "?"
    query = urlencode({"payment_id": payment.id, "state": payment.state.value})
    fragment = ""
    if "#" in return_url:
        return_url, fragment = return_url.split("#", 1)
        fragment = "#" + fragment
    return f"{return_url}{separator}{query}{fragment}"


async def handle_return(request: Request, runtime: Runtime) -> Response:
    """Verify, look up, confirm by query (bounded), then redirect or show the result."""
    started = time.perf_counter()
    container = runtime.container
    try:
        fields = await _fields(request, runtime)
        try:
            verify_return(fields, container.settings.webhook_secrets)
        except InvalidSignature as failure:
            raise BadReturn(
                "rejected_signature",
                400,
                f"This return is not signed by PayTabs ({failure.reason}).",
            ) from None
        payment = await find_by_gateway_reference(
            container.payments, cart_id=fields.get("cartId"), tran_ref=fields.get("tranRef")
        )
        if payment is None:
            raise BadReturn("unknown_payment", 404, "We do not know this payment.")
    except BadReturn as bad:
        log.warning("security_event", kind="return_rejected", endpoint=ENDPOINT,
                    outcome=bad.outcome)  # fmt: skip
        container.metrics.webhook(ENDPOINT, bad.outcome, time.perf_counter() - started)
        return page("Payment", bad.message, bad.status)

    synced = await sync_within(runtime, payment.id)
    payment = synced.payment
    outcome = "confirmed" if synced.confirmed else "unconfirmed"
    container.metrics.webhook(ENDPOINT, outcome, time.perf_counter() - started)
    log.info("browser return", payment_id=payment.id, state=payment.state.value, outcome=outcome)
    if payment.return_url:
        return RedirectResponse(
            redirect_target(payment.return_url, payment), status_code=303, headers=_SECURITY_HEADERS
        )
    message = _MESSAGES.get(payment.state) or (
        f"The payment is {payment.state.value.replace('_', ' ')}."
        if payment.state.is_final
        else "We are confirming your payment with the bank. You will get a confirmation "
        "shortly; please do not pay again."
    )
    return page("Payment " + payment.state.value.replace("_", " "), message)
