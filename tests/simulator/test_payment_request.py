"""`/payment/request` for hosted pages: authentication, validation, response shape, duplicates."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from paytabs_simulator.config import Profile, SimulatorConfig
from testkit.clock import FakeClock

from .support import KEY, PROFILE_ID, Gateway, gateway, page_body, sim_config

TRACE = re.compile(r"^PMNT0402\.[0-9A-F]{8}\.[0-9A-F]{8}$")


def assert_error(response: httpx.Response, status: int, code: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["code", "message", "trace"]
    assert (body["code"], body["message"]) == (code, message)
    assert TRACE.match(body["trace"])


@pytest.mark.anyio
async def test_wrong_server_key_is_refused(gw: Gateway) -> None:
    response = await gw.http.post(
        "/payment/request", json=page_body(), headers={"authorization": "S-WRONG-KEY"}
    )
    assert_error(response, 401, 1, "Authentication failed. Check authentication header.")


@pytest.mark.anyio
async def test_bearer_prefixed_key_is_refused(gw: Gateway) -> None:
    response = await gw.http.post(
        "/payment/request", json=page_body(), headers={"authorization": f"Bearer {KEY}"}
    )
    assert_error(response, 401, 1, "Authentication failed. Check authentication header.")


@pytest.mark.anyio
@pytest.mark.parametrize("profile_id", [123, "123", None, True, "98765x"])
async def test_unknown_or_missing_profile_is_refused(gw: Gateway, profile_id: object) -> None:
    response = await gw.request(page_body(profile_id=profile_id))
    assert_error(response, 401, 1, "Authentication failed. Check authentication header.")


@pytest.mark.anyio
async def test_missing_authorization_header_is_refused(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gw.sim.base_url, trust_env=False) as anonymous:
        response = await anonymous.post("/payment/request", json=page_body())
    assert_error(response, 401, 1, "Authentication failed. Check authentication header.")


@pytest.mark.anyio
async def test_profile_id_as_numeric_string_is_accepted(gw: Gateway) -> None:
    response = await gw.request(page_body(profile_id=str(PROFILE_ID)))
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_key_of_another_profile_is_refused() -> None:
    other = Profile(111111, "SOTHER0000-0000000000-0000000000")
    config = SimulatorConfig(profiles=[Profile(PROFILE_ID, KEY), other])
    async with gateway(config) as gw:
        response = await gw.request(page_body(profile_id=111111))
    assert_error(response, 401, 1, "Authentication failed. Check authentication header.")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"profile_id": 987654}', "text/plain"),
        (b"profile_id=987654", "application/x-www-form-urlencoded"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"cart_amount": NaN}', "application/json"),
        (b"", "application/json"),
    ],
)
async def test_body_that_is_not_a_json_object_is_refused(
    gw: Gateway, content: bytes, content_type: str
) -> None:
    response = await gw.http.post(
        "/payment/request", content=content, headers={"content-type": content_type}
    )
    assert_error(
        response, 400, 3, "Request must be in JSON format with content type application/json"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        ({"cart_id": 11111}, 101, "Cart ID not valid"),
        ({"cart_id": ""}, 101, "Cart ID not valid"),
        ({"cart_id": "x" * 65}, 101, "Cart ID not valid"),
        ({"cart_description": None}, 102, "Description not valid"),
        ({"cart_description": "d" * 129}, 102, "Description not valid"),
        ({"cart_description": 5}, 102, "Description not valid"),
        ({"customer_details": {"email": "not-an-email"}}, 106, "Email not valid"),
        ({"cart_currency": "JPY"}, 206, "Invalid currency code"),
        ({"cart_currency": "RIYAL"}, 206, "Invalid currency code"),
        ({"cart_currency": None}, 2, "Invalid request: cart_currency"),
        ({"cart_amount": 0}, 2, "Invalid amount"),
        ({"cart_amount": -5}, 2, "Invalid amount"),
        ({"cart_amount": "12.345"}, 2, "Invalid amount"),
        ({"cart_amount": 12.345}, 2, "Invalid amount"),
        ({"cart_amount": "ten"}, 2, "Invalid amount"),
        ({"cart_amount": 10000000000}, 2, "Invalid amount"),
        ({"cart_amount": True}, 2, "Invalid amount"),
        ({"cart_amount": None}, 2, "Invalid amount"),
        ({"tran_type": "purchase"}, 2, "Invalid request: tran_type"),
        ({"tran_class": None}, 2, "Invalid request: tran_class"),
        ({"tokenise": 9}, 2, "Invalid request: tokenise"),
        ({"paypage_ttl": 0}, 2, "Invalid request: paypage_ttl"),
        ({"callback": "ftp://merchant.example/ipn"}, 2, "Invalid request: callback"),
        ({"return": "not a url"}, 2, "Invalid request: return"),
        ({"user_defined": {"udf1": 5}}, 2, "Invalid request: user_defined"),
        ({"customer_details": "me"}, 2, "Invalid request: customer_details"),
    ],
)
async def test_invalid_field_gets_paytabs_error(
    gw: Gateway, overrides: dict[str, Any], code: int, message: str
) -> None:
    response = await gw.request(page_body(**overrides))
    assert_error(response, 400, code, message)
    assert await gw.sim_transactions() == []


@pytest.mark.anyio
async def test_hosted_page_answer_has_paytabs_shape(gw: Gateway, clock: FakeClock) -> None:
    response = await gw.request(page_body(cart_amount=12.3, cart_currency="sar"))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "tran_ref",
        "tran_type",
        "cart_id",
        "cart_description",
        "cart_currency",
        "cart_amount",
        "tran_currency",
        "tran_total",
        "callback",
        "return",
        "redirect_url",
        "serviceId",
        "profileId",
        "merchantId",
        "trace",
    ]
    assert re.fullmatch(r"TST25029\d{8}", body["tran_ref"])  # 2025-01-29 is day 029
    assert body["tran_type"] == "Sale"
    assert (body["cart_currency"], body["cart_amount"]) == ("SAR", "12.30")
    assert (body["tran_currency"], body["tran_total"]) == ("", "0")
    assert body["return"] == "none"
    assert re.fullmatch(rf"{gw.sim.base_url}/payment/page/[0-9A-F]{{32}}", body["redirect_url"])
    assert (body["serviceId"], body["profileId"], body["merchantId"]) == (2, PROFILE_ID, 123456)
    assert TRACE.match(body["trace"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [
        ("KWD", "12.345", "12.345"),
        ("BHD", 5, "5.000"),
        ("USD", "100", "100.00"),
        ("EUR", 1.5, "1.50"),
    ],
)
async def test_amount_is_a_string_with_the_currency_decimals(
    gw: Gateway, currency: str, amount: object, expected: str
) -> None:
    body = await gw.create_page(cart_currency=currency, cart_amount=amount)
    assert body["cart_amount"] == expected


@pytest.mark.anyio
async def test_auth_is_capitalised_and_urls_are_echoed(gw: Gateway) -> None:
    body = await gw.create_page(
        tran_type="auth",
        callback="http://127.0.0.1:8000/paytabs/ipn",
        **{"return": "http://localhost:8000/paytabs/return"},
    )
    assert body["tran_type"] == "Auth"
    assert body["callback"] == "http://127.0.0.1:8000/paytabs/ipn"
    assert body["return"] == "http://localhost:8000/paytabs/return"


@pytest.mark.anyio
async def test_optional_and_unknown_fields_are_accepted(gw: Gateway) -> None:
    await gw.create_page(
        customer_details={"name": "First Last", "email": "a@b.com", "zip": 12345},
        shipping_details={"name": "First Last", "city": "Riyadh"},
        hide_shipping=True,
        paypage_lang="ar",
        framed=True,
        tokenise=2,
        show_save_card=False,
        payment_methods=["card", "-tabby"],
        user_defined={"udf1": "order-uuid"},
        paypage_ttl=30,
        customer_ref="customer-7",
        something_new={"nested": [1, 2.5]},
        callback="",
    )
    [stored] = await gw.sim_transactions()
    assert stored["customer_details"]["zip"] == 12345
    assert stored["user_defined"] == {"udf1": "order-uuid"}
    assert stored["customer_ref"] == "customer-7"


@pytest.mark.anyio
async def test_strict_urls_refuse_loopback_and_ports(clock: FakeClock) -> None:
    async with gateway(sim_config(clock, strict_urls=True)) as gw:
        refused = await gw.request(page_body(callback="http://127.0.0.1:8000/ipn"))
        accepted = await gw.request(page_body(callback="https://merchant.example/ipn"))
    assert_error(refused, 400, 2, "Invalid request: callback")
    assert accepted.status_code == 200


@pytest.mark.anyio
async def test_redirect_url_uses_configured_public_base(clock: FakeClock) -> None:
    config = sim_config(clock, public_base_url="https://secure.paytabs.test/")
    async with gateway(config) as gw:
        body = await gw.create_page()
    assert body["redirect_url"].startswith("https://secure.paytabs.test/payment/page/")


@pytest.mark.anyio
async def test_identical_request_within_window_is_a_duplicate(gw: Gateway) -> None:
    await gw.create_page()
    response = await gw.request(page_body())
    assert_error(response, 409, 4, "Duplicate Request")
    assert len(await gw.sim_transactions()) == 1


@pytest.mark.anyio
async def test_identical_request_after_window_is_a_new_transaction(
    gw: Gateway, clock: FakeClock
) -> None:
    first = await gw.create_page()
    clock.advance(119)
    assert (await gw.request(page_body())).status_code == 409
    clock.advance(2)
    second = await gw.create_page()
    assert second["tran_ref"] != first["tran_ref"]
    assert len(await gw.sim_transactions(cart_id="cart-1")) == 2


@pytest.mark.anyio
async def test_same_cart_with_other_amount_is_not_a_duplicate(gw: Gateway) -> None:
    await gw.create_page()
    await gw.create_page(cart_amount=101)
    assert len(await gw.sim_transactions(cart_id="cart-1")) == 2


@pytest.mark.anyio
async def test_invalid_request_is_not_remembered_as_a_duplicate(gw: Gateway) -> None:
    assert (await gw.request(page_body(cart_currency="JPY"))).status_code == 400
    assert (await gw.request(page_body(cart_currency="JPY"))).status_code == 400
