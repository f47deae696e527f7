"""Tokens: created by a tokenised payment, charged as recurring, queried and deleted."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from paytabs_simulator.config import Profile
from testkit.clock import FakeClock

from .support import KEY, PROFILE_ID, Gateway, gateway, page_body, sim_config


def recurring(token: str, tran_ref: str, **overrides: Any) -> dict[str, Any]:
    return page_body(
        tran_class="recurring", token=token, tran_ref=tran_ref, cart_id="renewal-1", **overrides
    )


async def token_call(gw: Gateway, path: str, token: str) -> httpx.Response:
    return await gw.http.post(path, json={"profile_id": PROFILE_ID, "token": token})


@pytest.mark.anyio
async def test_recurring_charge_with_token(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    response = await gw.request(recurring(first["token"], first["tran_ref"], cart_amount=25))
    assert response.status_code == 200, response.text
    tx = response.json()
    assert (tx["tran_class"], tx["tran_type"]) == ("Recurring", "Sale")
    assert tx["payment_result"]["response_status"] == "A"
    assert tx["token"] == first["token"]
    assert tx["payment_info"] == first["payment_info"]
    assert tx["cart_amount"] == "25.00"
    # The charge itself can be refunded like any sale.
    refund = await gw.follow_up("refund", tx["tran_ref"], 25, cart_id="renewal-1")
    assert refund.status_code == 200, refund.text


@pytest.mark.anyio
async def test_later_charge_may_name_an_earlier_recurring_transaction(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    second = (await gw.request(recurring(first["token"], first["tran_ref"]))).json()
    third = await gw.request(recurring(first["token"], second["tran_ref"], cart_amount=7))
    assert third.status_code == 200, third.text


@pytest.mark.anyio
async def test_unknown_token_is_invalid(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    response = await gw.request(recurring("0" * 32, first["tran_ref"]))
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["message"]) == (209, "Invalid Merchant Token")


@pytest.mark.anyio
async def test_token_with_a_foreign_tran_ref_is_invalid(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    other = await gw.paid_transaction(cart_id="cart-2")
    response = await gw.request(recurring(first["token"], other["tran_ref"]))
    assert response.json()["code"] == 209


@pytest.mark.anyio
async def test_token_query_returns_the_transaction_that_created_it(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    response = await token_call(gw, "/payment/token", first["token"])
    assert response.status_code == 200
    body = response.json()
    assert (body["tran_ref"], body["token"]) == (first["tran_ref"], first["token"])


@pytest.mark.anyio
async def test_deleted_token_cannot_be_charged_or_queried(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    deleted = await token_call(gw, "/payment/token/delete", first["token"])
    assert deleted.status_code == 200
    body = deleted.json()
    assert (body["code"], body["message"]) == (0, "Token deleted")
    assert list(body) == ["code", "message", "trace"]

    charge = await gw.request(recurring(first["token"], first["tran_ref"]))
    assert (charge.status_code, charge.json()["code"]) == (400, 209)
    assert (await token_call(gw, "/payment/token", first["token"])).json()["code"] == 209
    assert (await token_call(gw, "/payment/token/delete", first["token"])).json()["code"] == 209
    # Deleting a token leaves the transactions made with it alone.
    original = (await gw.query(tran_ref=first["tran_ref"])).json()
    assert original["payment_result"]["response_status"] == "A"


@pytest.mark.anyio
async def test_recurring_charge_over_limit_is_declined(clock: FakeClock) -> None:
    profile = Profile(PROFILE_ID, KEY, transaction_limit=Decimal(200))
    async with gateway(sim_config(clock, profiles=[profile])) as gw:
        first = await gw.paid_transaction(tokenise=2)
        response = await gw.request(recurring(first["token"], first["tran_ref"], cart_amount=201))
    result = response.json()["payment_result"]
    assert (result["response_status"], result["response_code"]) == ("D", "325")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tokenise", "pattern"), [(3, r"[A-Z0-9]{20}"), (4, r"\d{22}"), (6, r"[A-Z0-9]{32}")]
)
async def test_token_format_follows_tokenise(gw: Gateway, tokenise: int, pattern: str) -> None:
    tx = await gw.paid_transaction(tokenise=tokenise)
    assert re.fullmatch(pattern, tx["token"])


@pytest.mark.anyio
@pytest.mark.parametrize("tokenise", [None, 1])
async def test_no_token_unless_the_page_asked_for_one(gw: Gateway, tokenise: int | None) -> None:
    overrides: dict[str, Any] = {} if tokenise is None else {"tokenise": tokenise}
    tx = await gw.paid_transaction(**overrides)
    assert tx["payment_result"]["response_status"] == "A"
    assert "token" not in tx
    assert gw.sim.engine.tokens == {}


@pytest.mark.anyio
async def test_recurring_charge_needs_no_page_and_answers_at_once(gw: Gateway) -> None:
    first = await gw.paid_transaction(tokenise=2)
    pages_before = len(gw.sim.engine.pages)
    response = await gw.request(recurring(first["token"], first["tran_ref"], cart_amount=9))
    assert response.status_code == 200, response.text
    assert "redirect_url" not in response.json()
    assert len(gw.sim.engine.pages) == pages_before  # no hosted page was opened


@pytest.mark.anyio
async def test_a_card_past_its_expiry_month_is_declined_as_expired(
    gw: Gateway, clock: FakeClock
) -> None:
    # A token outlives its card: the issuer declines the charge (D, 54) once the card's
    # expiry month is over, and the token stays valid for a card renewed with its number.
    today = clock()
    first = (
        await gw.pay(
            await gw.create_page(tokenise=2), expiry_month=today.month, expiry_year=today.year
        )
    )["transaction"]
    within = await gw.request(recurring(first["token"], first["tran_ref"]))
    assert within.json()["payment_result"]["response_status"] == "A"

    clock.advance(timedelta(days=31))
    assert (clock().year, clock().month) > (today.year, today.month)  # the month is over
    after = await gw.request(recurring(first["token"], first["tran_ref"]))
    assert after.status_code == 200, after.text
    result = after.json()["payment_result"]
    assert (result["response_status"], result["response_code"]) == ("D", "54")
    assert after.json()["token"] == first["token"]
    still = await token_call(gw, "/payment/token", first["token"])
    assert still.status_code == 200, still.text
