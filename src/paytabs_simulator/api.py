"""The PayTabs PT2 JSON API: `/payment/request`, `/payment/query`, `/payment/token[/delete]`."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response

from paytabs_simulator import errors
from paytabs_simulator.config import Profile
from paytabs_simulator.engine import Engine
from paytabs_simulator.errors import ApiError
from paytabs_simulator.records import JsonObject
from paytabs_simulator.wire import error_object, json_bytes, page_created, transaction_object


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(json_bytes(content), status_code=status_code, media_type="application/json")


def error_response(engine: Engine, error: ApiError) -> Response:
    return json_response(error_object(error.code, error.message, engine.trace()), error.http_status)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request) -> JsonObject:
    """The body as a JSON object with numbers as Decimal; raises ApiError code 3 otherwise."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise errors.not_json()
    raw = await request.body()
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        raise errors.not_json() from None
    if not isinstance(body, dict):
        raise errors.not_json()
    return body


def payment_api(engine: Engine) -> APIRouter:
    router = APIRouter(tags=["PayTabs PT2"])

    async def authenticated(request: Request) -> tuple[Profile, JsonObject]:
        body = await read_json(request)
        # PayTabs takes the raw server key, no "Bearer" (docs/paytabs.md §3).
        profile = engine.authenticate(request.headers.get("authorization"), body.get("profile_id"))
        return profile, body

    def public_base(request: Request) -> str:
        return engine.config.public_base_url or str(request.base_url).rstrip("/")

    @router.post("/payment/request")
    async def payment_request(request: Request) -> Response:
        try:
            profile, body = await authenticated(request)
            tx = engine.payment_request(profile, body)
        except ApiError as error:
            return error_response(engine, error)
        if tx.page is not None:
            redirect_url = f"{public_base(request)}/payment/page/{tx.page.page_id}"
            return json_response(page_created(tx, redirect_url, engine.trace()))
        return json_response(transaction_object(tx, trace=engine.trace()))

    @router.post("/payment/query")
    async def query(request: Request) -> Response:
        try:
            profile, body = await authenticated(request)
            tran_ref, cart_id = body.get("tran_ref"), body.get("cart_id")
            if isinstance(tran_ref, str) and tran_ref:
                tx = engine.find_transaction(profile, tran_ref)
                return json_response(transaction_object(tx, trace=engine.trace()))
            if isinstance(cart_id, str) and cart_id:
                found = engine.cart_transactions(profile, cart_id)
                return json_response([transaction_object(tx) for tx in found])
            raise errors.invalid_request("tran_ref")
        except ApiError as error:
            return error_response(engine, error)

    @router.post("/payment/token")
    async def token_query(request: Request) -> Response:
        try:
            profile, body = await authenticated(request)
            tx = engine.token_origin(profile, body.get("token"))
        except ApiError as error:
            return error_response(engine, error)
        return json_response(transaction_object(tx, trace=engine.trace()))

    @router.post("/payment/token/delete")
    async def token_delete(request: Request) -> Response:
        try:
            profile, body = await authenticated(request)
            engine.delete_token(profile, body.get("token"))
        except ApiError as error:
            return error_response(engine, error)
        return json_response({"code": 0, "message": "Token deleted", "trace": engine.trace()})

    return router
