"""`/payment/query` by `tran_ref` (one object) and by `cart_id` (every attempt, as an array)."""

from __future__ import annotations

import pytest

from paytabs_simulator.config import Profile
from testkit.clock import FakeClock

from .support import KEY, PROFILE_ID, Gateway, gateway, page_body, sim_config


@pytest.mark.anyio
async def test_query_by_tran_ref_returns_the_transaction(gw: Gateway) -> None:
    paid = await gw.paid_transaction()
    response = await gw.query(tran_ref=paid["tran_ref"])
    assert response.status_code == 200
    body = response.json()
    assert body.pop("trace").startswith("PMNT0402.")
    assert body == paid


@pytest.mark.anyio
async def test_query_of_unknown_tran_ref_is_not_found(gw: Gateway) -> None:
    response = await gw.query(tran_ref="TST2502900000001")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["message"]) == (113, "Transaction not found")


@pytest.mark.anyio
async def test_query_by_cart_lists_every_attempt_in_creation_order(gw: Gateway) -> None:
    declined = await gw.paid_transaction("4000000000000010")
    paid = await gw.paid_transaction(cart_amount="100.00")
    unpaid = await gw.create_page(cart_amount="100.0")
    refund = (await gw.follow_up("refund", paid["tran_ref"], 5)).json()
    await gw.create_page(cart_id="another-cart")

    response = await gw.query(cart_id="cart-1")
    assert response.status_code == 200
    found = response.json()
    assert [tx["tran_ref"] for tx in found] == [
        declined["tran_ref"],
        paid["tran_ref"],
        unpaid["tran_ref"],
        refund["tran_ref"],
    ]
    page_only = found[2]
    assert "payment_result" not in page_only
    assert "payment_info" not in page_only
    assert (page_only["tran_currency"], page_only["tran_total"]) == ("", "0")
    assert all("trace" not in tx for tx in found)


@pytest.mark.anyio
async def test_query_of_unknown_cart_is_an_empty_list(gw: Gateway) -> None:
    response = await gw.query(cart_id="never-used")
    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.anyio
async def test_query_without_reference_is_invalid(gw: Gateway) -> None:
    response = await gw.query()
    assert (response.status_code, response.json()["code"]) == (400, 2)


@pytest.mark.anyio
async def test_profiles_do_not_see_each_other(clock: FakeClock) -> None:
    other_key = "SOTHER0000-0000000000-0000000000"
    profiles = [Profile(PROFILE_ID, KEY), Profile(222222, other_key)]
    async with gateway(sim_config(clock, profiles=profiles)) as gw:
        created = await gw.create_page()
        as_other = {"authorization": other_key}
        by_ref = await gw.http.post(
            "/payment/query",
            json={"profile_id": 222222, "tran_ref": created["tran_ref"]},
            headers=as_other,
        )
        by_cart = await gw.http.post(
            "/payment/query", json={"profile_id": 222222, "cart_id": "cart-1"}, headers=as_other
        )
        own = await gw.http.post(
            "/payment/request", json=page_body(profile_id=222222), headers=as_other
        )
    assert by_ref.json()["code"] == 113
    assert by_cart.json() == []
    assert own.status_code == 200  # same body, other profile: not a duplicate
