"""Capture, void, release and refund: PayTabs' rules on what may follow what."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from .support import Gateway

AMOUNT_EXCEEDS = (301, "Amount exceeds the remaining amount")
NOT_ALLOWED = (302, "Operation not allowed for this transaction")


def accepted(response: httpx.Response, tran_type: str, original: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    tx: dict[str, Any] = response.json()
    assert tx["tran_type"] == tran_type
    assert tx["previous_tran_ref"] == original
    assert tx["tran_ref"] != original
    assert tx["payment_result"]["response_status"] == "A"
    return tx


def refused(response: httpx.Response, error: tuple[int, str]) -> None:
    assert response.status_code == 400, response.text
    assert (response.json()["code"], response.json()["message"]) == error


@pytest.mark.anyio
async def test_follow_up_is_a_new_complete_transaction(gw: Gateway) -> None:
    sale = await gw.paid_transaction(user_defined={"udf1": "order-1"})
    response = await gw.follow_up("refund", sale["tran_ref"], "40.5")
    refund = accepted(response, "Refund", sale["tran_ref"])
    assert list(refund)[:3] == ["tran_ref", "previous_tran_ref", "merchant_id"]
    assert re.fullmatch(r"TST25029\d{8}", refund["tran_ref"])
    assert (refund["cart_amount"], refund["tran_total"]) == ("40.50", "40.50")
    assert refund["tran_class"] == "ECom"
    assert refund["user_defined"] == {"udf1": "order-1"}
    assert refund["payment_info"] == sale["payment_info"]
    assert re.fullmatch(r"PMNT0402\.[0-9A-F]{8}\.[0-9A-F]{8}", refund["trace"])
    assert len(await gw.sim_transactions(cart_id="cart-1")) == 2


@pytest.mark.anyio
async def test_partial_captures_up_to_the_authorised_amount(gw: Gateway) -> None:
    auth = await gw.paid_transaction(tran_type="auth")
    accepted(await gw.follow_up("capture", auth["tran_ref"], 60), "Capture", auth["tran_ref"])
    refused(await gw.follow_up("capture", auth["tran_ref"], "40.01"), AMOUNT_EXCEEDS)
    accepted(await gw.follow_up("capture", auth["tran_ref"], 40), "Capture", auth["tran_ref"])
    refused(await gw.follow_up("capture", auth["tran_ref"], "0.01"), AMOUNT_EXCEEDS)


@pytest.mark.anyio
@pytest.mark.parametrize("tran_type", ["void", "release"])
async def test_void_or_release_ends_an_uncaptured_auth(gw: Gateway, tran_type: str) -> None:
    auth = await gw.paid_transaction(tran_type="auth")
    response = await gw.follow_up(tran_type, auth["tran_ref"], 100)
    accepted(response, tran_type.capitalize(), auth["tran_ref"])
    refused(await gw.follow_up("capture", auth["tran_ref"], 10), NOT_ALLOWED)
    refused(await gw.follow_up("void", auth["tran_ref"], 99), NOT_ALLOWED)


@pytest.mark.anyio
async def test_void_after_capture_is_refused(gw: Gateway) -> None:
    auth = await gw.paid_transaction(tran_type="auth")
    await gw.follow_up("capture", auth["tran_ref"], 10)
    refused(await gw.follow_up("void", auth["tran_ref"], 90), NOT_ALLOWED)


@pytest.mark.anyio
async def test_partial_refunds_up_to_the_sale_amount(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    accepted(await gw.follow_up("refund", sale["tran_ref"], 30), "Refund", sale["tran_ref"])
    accepted(await gw.follow_up("refund", sale["tran_ref"], 70), "Refund", sale["tran_ref"])
    refused(await gw.follow_up("refund", sale["tran_ref"], "0.01"), AMOUNT_EXCEEDS)


@pytest.mark.anyio
async def test_refund_is_bounded_by_what_was_captured(gw: Gateway) -> None:
    auth = await gw.paid_transaction(tran_type="auth")
    capture = (await gw.follow_up("capture", auth["tran_ref"], 25)).json()
    refused(await gw.follow_up("refund", capture["tran_ref"], "25.01"), AMOUNT_EXCEEDS)
    accepted(await gw.follow_up("refund", capture["tran_ref"], 25), "Refund", capture["tran_ref"])


@pytest.mark.anyio
async def test_refund_of_an_auth_is_refused(gw: Gateway) -> None:
    auth = await gw.paid_transaction(tran_type="auth")
    refused(await gw.follow_up("refund", auth["tran_ref"], 10), NOT_ALLOWED)


@pytest.mark.anyio
@pytest.mark.parametrize("tran_type", ["capture", "void", "release"])
async def test_auth_only_operations_on_a_sale_are_refused(gw: Gateway, tran_type: str) -> None:
    sale = await gw.paid_transaction()
    refused(await gw.follow_up(tran_type, sale["tran_ref"], 10), NOT_ALLOWED)


@pytest.mark.anyio
async def test_follow_up_of_a_declined_or_unpaid_transaction_is_refused(gw: Gateway) -> None:
    declined = await gw.paid_transaction("4000000000000010")
    refused(await gw.follow_up("refund", declined["tran_ref"], 10), NOT_ALLOWED)
    unpaid = await gw.create_page(cart_id="cart-2")
    refused(await gw.follow_up("refund", unpaid["tran_ref"], 10), NOT_ALLOWED)


@pytest.mark.anyio
async def test_follow_up_of_unknown_transaction_is_not_found(gw: Gateway) -> None:
    refused(await gw.follow_up("refund", "TST2502900000000", 10), (113, "Transaction not found"))


@pytest.mark.anyio
async def test_follow_up_in_another_currency_is_refused(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    response = await gw.follow_up("refund", sale["tran_ref"], 10, cart_currency="USD")
    refused(response, (206, "Invalid currency code"))


@pytest.mark.anyio
async def test_follow_up_without_tran_ref_is_invalid(gw: Gateway) -> None:
    response = await gw.request(
        {
            "profile_id": 987654,
            "tran_type": "refund",
            "tran_class": "ecom",
            "cart_id": "c",
            "cart_currency": "SAR",
            "cart_amount": 1,
            "cart_description": "d",
        }
    )
    refused(response, (2, "Invalid request: tran_ref"))


@pytest.mark.anyio
async def test_refund_pending_fault_gives_status_p(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    await gw.set_faults(refund_pending=True)
    response = await gw.follow_up("refund", sale["tran_ref"], 100)
    assert response.status_code == 200
    assert response.json()["payment_result"]["response_status"] == "P"
    refused(await gw.follow_up("refund", sale["tran_ref"], 1), AMOUNT_EXCEEDS)


@pytest.mark.anyio
async def test_capture_pending_fault_gives_status_p_and_reserves_its_amount(gw: Gateway) -> None:
    auth = await gw.paid_transaction(tran_type="auth")
    await gw.set_faults(capture_pending=True)
    response = await gw.follow_up("capture", auth["tran_ref"], 60)
    assert response.status_code == 200
    assert response.json()["payment_result"]["response_status"] == "P"
    refused(await gw.follow_up("capture", auth["tran_ref"], "40.01"), AMOUNT_EXCEEDS)


@pytest.mark.anyio
async def test_pending_refund_can_be_settled(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    await gw.set_faults(refund_pending=True)
    refund = (await gw.follow_up("refund", sale["tran_ref"], 100)).json()
    response = await gw.http.post(f"/_sim/transactions/{refund['tran_ref']}/settle", json={})
    assert response.json()["payment_result"]["response_status"] == "A"
    queried = (await gw.query(tran_ref=refund["tran_ref"])).json()
    assert queried["payment_result"]["response_status"] == "A"
    again = await gw.http.post(f"/_sim/transactions/{refund['tran_ref']}/settle")
    assert again.status_code == 409


@pytest.mark.anyio
async def test_repeated_identical_refund_is_a_duplicate(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    await gw.follow_up("refund", sale["tran_ref"], 10)
    response = await gw.follow_up("refund", sale["tran_ref"], 10)
    assert response.status_code == 409
    assert len(await gw.sim_transactions()) == 2
