"""The simulator's own test/admin API under `/_sim`: pay without a browser, inspect, faults."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

from paytabs_simulator.api import json_response
from paytabs_simulator.cards import InvalidCard, read_card
from paytabs_simulator.engine import Engine, PageUnavailable, SettleRefused
from paytabs_simulator.faults import Faults
from paytabs_simulator.hosted_page import UNAVAILABLE_STATUS
from paytabs_simulator.pages import TEXT
from paytabs_simulator.returns import browser_return
from paytabs_simulator.wire import transaction_object


class PayRequest(BaseModel):
    """What a test "types" into the hosted page. 3-D Secure completes by itself."""

    model_config = ConfigDict(extra="forbid")

    card_number: str | None = None
    cvv: str = "123"
    expiry_month: int = 12
    # None = three years after the simulator's current date, so the default never expires.
    expiry_year: int | None = None
    cardholder_name: str = "Test Customer"
    cancel: bool = False
    save_card: bool = True


class SettleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_status: Literal["A", "D", "E", "X"] = "A"


def problem(status: int, detail: str) -> Response:
    return json_response({"detail": detail}, status)


def admin_routes(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/_sim", tags=["simulator"])

    @router.post("/pages/{page_id}/pay")
    async def pay(page_id: str, request: PayRequest) -> Response:
        try:
            tx = engine.open_page(page_id)
        except PageUnavailable as error:
            # the test API answers in English, whatever the page's language
            return problem(UNAVAILABLE_STATUS[error.problem], TEXT["en"][f"{error.problem}_title"])
        if request.cancel:
            engine.cancel_page(tx)
        else:
            if request.card_number is None:
                return problem(422, "card_number is required unless cancel is true")
            expiry_year = request.expiry_year or engine.now().year + 3
            try:
                card = read_card(
                    request.card_number,
                    request.expiry_month,
                    expiry_year,
                    request.cvv,
                    engine.now(),
                )
            except InvalidCard as error:
                return problem(422, str(error))
            if not engine.submit_card(tx, card, save_card=request.save_card):
                engine.complete_3ds(tx)
        target = browser_return(tx)
        return json_response(
            {
                "transaction": transaction_object(tx),
                "return": target.as_json()
                if target
                else {"method": None, "url": None, "fields": {}},
            }
        )

    @router.get("/transactions")
    async def transactions(cart_id: str | None = None, tran_ref: str | None = None) -> Response:
        found = [
            transaction_object(tx)
            for tx in engine.transactions.values()
            if (cart_id is None or tx.cart_id == cart_id)
            and (tran_ref is None or tx.tran_ref == tran_ref)
        ]
        return json_response(found)

    @router.post("/transactions/{tran_ref}/settle")
    async def settle(tran_ref: str, request: SettleRequest | None = None) -> Response:
        status = request.response_status if request else "A"
        try:
            tx = engine.settle(tran_ref, status)
        except SettleRefused as error:
            return problem(409, str(error))
        return json_response(transaction_object(tx))

    @router.get("/callbacks")
    async def callbacks(tran_ref: str | None = None) -> Response:
        entries = [
            entry.as_json()
            for entry in engine.callbacks.log
            if tran_ref is None or entry.tran_ref == tran_ref
        ]
        return json_response(entries)

    @router.get("/faults")
    async def get_faults() -> Response:
        return json_response(engine.faults.model_dump(mode="json"))

    @router.put("/faults")
    async def put_faults(faults: Faults) -> Response:
        engine.set_faults(faults)
        return json_response(faults.model_dump(mode="json"))

    @router.patch("/faults")
    async def patch_faults(changes: dict[str, Any] = Body(...)) -> Response:  # noqa: B008
        merged = engine.faults.model_dump() | changes
        try:
            faults = Faults.model_validate(merged)
        except ValidationError as error:
            raise RequestValidationError(error.errors(include_url=False)) from None
        engine.set_faults(faults)
        return json_response(faults.model_dump(mode="json"))

    @router.post("/reset")
    async def reset() -> Response:
        await engine.reset()
        return json_response({"reset": True})

    @router.get("/stats")
    async def stats() -> Response:
        return json_response(
            {
                "transactions": len(engine.transactions),
                "callback_attempts": len(engine.callbacks.log),
                "counters": dict(sorted(engine.stats.items())),
            }
        )

    @router.get("/health")
    async def health() -> Response:
        return json_response({"status": "pass"})

    return router
