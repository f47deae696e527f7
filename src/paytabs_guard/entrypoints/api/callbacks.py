"""PayTabs-facing routes: the signed callback (IPN) and the customer's browser return.

Both read the raw request themselves (verification needs the exact bytes), so the routes take
the ``Request``; the checks live in ``webhook_receiver`` and ``browser_return``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from . import problems
from .browser_return import handle_return
from .dependencies import RuntimeDep
from .schemas import PROBLEM_RESPONSE

router = APIRouter(prefix="/payments/v2", tags=["PayTabs callbacks"])

_PROBLEM = PROBLEM_RESPONSE


@router.post(
    "/webhook",
    summary="PayTabs callback (IPN)",
    description="Called by PayTabs with a transaction object signed over the raw body "
    "(``Signature``: HMAC-SHA256, hex). Standard Webhooks deliveries (``webhook-id``, "
    "``webhook-timestamp``, ``webhook-signature``) from a relay are accepted too.",
    responses={
        200: {"description": "Stored (processed, duplicate, stale, conflict or quarantined)"},
        400: _PROBLEM,
        401: _PROBLEM,
        403: _PROBLEM,
        413: _PROBLEM,
        415: _PROBLEM,
        429: _PROBLEM,
        503: _PROBLEM,
    },
)
async def paytabs_webhook(request: Request, runtime: RuntimeDep) -> Response:
    return await runtime.webhook.receive(request)


@router.api_route("/webhook", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def webhook_wrong_method() -> Response:
    # Without this, GET /payments/v2/webhook would match GET /payments/v2/{payment_id}.
    raise problems.method_not_allowed(("POST",))


_RETURN_DESCRIPTION = (
    "Verifies PayTabs' return signature (PayTabs' own fields only), confirms the payment by "
    "query (bounded in time), then redirects (303) to the payment's return_url with payment_id "
    "and state, or shows a result page (English or Arabic from Accept-Language). A bad "
    "signature gets a 400 page and changes nothing."
)
_RETURN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "Result page (no return_url)"},
    303: {"description": "To the merchant's return_url"},
    400: {"content": {"text/html": {}}, "description": "Not signed by PayTabs"},
    404: {"content": {"text/html": {}}, "description": "Unknown payment"},
}


@router.post(
    "/return",
    summary="Customer returns from the PayTabs page (form POST)",
    description=_RETURN_DESCRIPTION,
    responses=_RETURN_RESPONSES | {415: {"description": "Not a url-encoded form"}},
    response_class=Response,
)
async def browser_return_post(request: Request, runtime: RuntimeDep) -> Response:
    return await handle_return(request, runtime)


@router.get(
    "/return",
    summary="Customer returns from the PayTabs page (return_using_get)",
    description=_RETURN_DESCRIPTION,
    responses=_RETURN_RESPONSES,
    response_class=Response,
)
async def browser_return_get(request: Request, runtime: RuntimeDep) -> Response:
    return await handle_return(request, runtime)
