"""PayTabs-facing routes: the signed callback (IPN) and the customer's browser return.

Both read the raw request themselves (verification needs the exact bytes), so the routes take
the ``Request``; the checks live in ``webhook_receiver`` and ``browser_return``.

The callback takes a shorter way in (:func:`answer_callback`, called by the front door): the
receiver needs nothing FastAPI resolves, and at a few hundred callbacks a second FastAPI's
route matching, dependency solving and exception wrappers were about a sixth of a callback's
CPU. The route below stays for the API description, and answers the same when the front door
is not in front of it.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from paytabs_guard.domain.gateway_results import RETURN_FIELDS

from . import problems
from .browser_return import handle_return
from .dependencies import RuntimeDep
from .runtime import Runtime
from .schemas import PROBLEM_RESPONSE

WEBHOOK_PATH = "/payments/v2/webhook"

router = APIRouter(prefix="/payments/v2", tags=["PayTabs callbacks"])

_PROBLEM = PROBLEM_RESPONSE

#: What PayTabs sends, for the API description only: the route reads the raw bytes itself (the
#: signature covers them), and the receiver checks the fields (``webhook_receiver``).
_CALLBACK_BODY: Final[dict[str, Any]] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "PayTabs' transaction object, as its callback (IPN) sends it.",
                "required": [
                    "tran_ref",
                    "profile_id",
                    "cart_id",
                    "cart_currency",
                    "cart_amount",
                    "tran_type",
                    "payment_result",
                ],
                "properties": {
                    "tran_ref": {"type": "string", "description": "PayTabs' transaction reference"},
                    "profile_id": {
                        "type": "integer",
                        "description": "The merchant's PayTabs profile; another profile's "
                        "transaction is refused",
                    },
                    "previous_tran_ref": {
                        "type": "string",
                        "description": "For a capture, void or refund: the transaction it follows",
                    },
                    "cart_id": {"type": "string", "description": "The cart id this service sent"},
                    "cart_currency": {"type": "string", "description": "ISO 4217 code"},
                    "cart_amount": {"type": "string", "description": "Decimal, as text"},
                    "tran_type": {"type": "string", "description": "Sale, Auth, Capture, Void…"},
                    "payment_result": {
                        "type": "object",
                        "description": "response_status: A (authorised), H (on hold), P "
                        "(pending), V (voided), D (declined), E (error), X (expired), C "
                        "(cancelled)",
                        "properties": {
                            "response_status": {"type": "string"},
                            "response_code": {"type": "string"},
                            "response_message": {"type": "string"},
                        },
                    },
                },
            }
        }
    },
}
_CALLBACK_PARAMETERS: Final[list[dict[str, Any]]] = [
    {
        "name": "Signature",
        "in": "header",
        "required": False,
        "description": "PayTabs' HMAC-SHA256 of the raw body with the server key, hex "
        "(absent on a Standard Webhooks delivery, which signs with webhook-signature)",
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    }
]
_RETURN_FORM: Final[dict[str, Any]] = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "description": "PayTabs' return fields, signed with the server key; tranRef or "
                "cartId names the payment. Other fields are ignored.",
                "required": ["signature"],
                "properties": {name: {"type": "string"} for name in sorted(RETURN_FIELDS)},
            }
        }
    },
}


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
    openapi_extra={"requestBody": _CALLBACK_BODY, "parameters": _CALLBACK_PARAMETERS},
)
async def paytabs_webhook(request: Request, runtime: RuntimeDep) -> Response:
    return await runtime.webhook.receive(request)


_WEBHOOK_ROUTE = next(
    route
    for route in router.routes
    if isinstance(route, APIRoute) and route.endpoint is paytabs_webhook
)


async def answer_callback(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /payments/v2/webhook`` answered by the receiver, past FastAPI's router. The scope
    names the route as the router would, for the access line, the metrics and the trace."""
    scope["route"] = _WEBHOOK_ROUTE
    response = await runtime.webhook.receive(Request(scope, receive, send))
    await response(scope, receive, send)


@router.api_route("/webhook", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def webhook_wrong_method() -> Response:
    # Without this, GET /payments/v2/webhook would match GET /payments/v2/{payment_id}.
    raise problems.method_not_allowed(("POST",))


_RETURN_DESCRIPTION = (
    "Verifies PayTabs' return signature (PayTabs' own fields only), confirms the payment by "
    "query (bounded in time), then redirects (303) to the payment's return_url with payment_id "
    "and state (not signed: the merchant's page confirms with GET /payments/v2/{id} before "
    "fulfilling), or shows a result page (English or Arabic from Accept-Language). A bad "
    "signature gets a 400 page and changes nothing. A return repeated for an undecided "
    "payment asks PayTabs at most once every 2 seconds (per worker), and never twice at once."
)
_RETURN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "Result page (no return_url)"},
    303: {"description": "To the merchant's return_url"},
    400: {"content": {"text/html": {}}, "description": "Not signed by PayTabs"},
    404: {"content": {"text/html": {}}, "description": "Unknown payment"},
}

#: The form's own body checks (``browser_return._fields``), answered with a page like the rest:
#: the front door leaves this body to the route, so it adds none of its answers here.
_RETURN_FORM_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {"content": {"text/html": {}}, "description": "The form did not arrive whole in time"},
    413: {"content": {"text/html": {}}, "description": "The form is over WEBHOOK_MAX_BODY_BYTES"},
    415: {"content": {"text/html": {}}, "description": "Not a url-encoded form"},
}


@router.post(
    "/return",
    summary="Customer returns from the PayTabs page (form POST)",
    description=_RETURN_DESCRIPTION,
    responses=_RETURN_RESPONSES | _RETURN_FORM_RESPONSES,
    response_class=Response,
    openapi_extra={"requestBody": _RETURN_FORM},
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


@router.api_route("/return", methods=["PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
async def return_wrong_method() -> Response:
    # Two routes serve this URL; the router's own 405 names only the first one's method.
    raise problems.method_not_allowed(("GET", "POST"))
