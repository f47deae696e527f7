"""Paying the hosted page: the test-card table, the HTML flow, 3-D Secure, cancel, return."""

from __future__ import annotations

import re
from decimal import Decimal
from html import escape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from paytabs_simulator.config import Profile
from paytabs_simulator.records import JsonObject
from testkit.clock import FakeClock

from .support import (
    KEY,
    PROFILE_ID,
    VISA,
    Gateway,
    gateway,
    independent_return_signature,
    page_id,
    sim_config,
)

RETURN_URL = "https://merchant.example/paytabs/return"


class FormReader(HTMLParser):
    """Collects forms (action, method, named inputs) from a page, as a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({**attributes, "fields": {}})
        elif tag == "input" and self.forms and "name" in attributes:
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")


def forms_of(html: str) -> list[dict[str, Any]]:
    reader = FormReader()
    reader.feed(html)
    return reader.forms


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("card", "status", "code", "message", "scheme"),
    [
        ("4111111111111111", "A", None, "Authorised", "Visa"),
        ("5200000000000114", "A", None, "Authorised", "MasterCard"),
        ("4000000000000002", "A", None, "Authorised", "Visa"),
        ("4000000000000010", "D", "51", "Insufficient Funds", "Visa"),
        ("4000000000000028", "E", "96", "Error", "Visa"),
        ("4000000000000036", "H", None, "On hold", "Visa"),
        ("4000000000000044", "P", "100", "Pending", "Visa"),
        ("4000000000000069", "D", "54", "Expired card", "Visa"),
        ("4000000000000077", "C", "321", "Cancelled", "Visa"),
        ("4242424242424242", "D", "05", "Do not honour", "Visa"),
    ],
)
async def test_test_card_decides_the_outcome(
    gw: Gateway, card: str, status: str, code: str | None, message: str, scheme: str
) -> None:
    tx = await gw.paid_transaction(card)
    result = tx["payment_result"]
    assert (result["response_status"], result["response_message"]) == (status, message)
    if code is None:
        assert re.fullmatch(r"G\d{5}", result["response_code"])
    else:
        assert result["response_code"] == code
    info = tx["payment_info"]
    assert info["payment_description"] == f"{card[:4]} {card[4:6]}## #### {card[-4:]}"
    assert (info["card_scheme"], info["expiryMonth"], info["expiryYear"]) == (scheme, 12, 2028)
    assert (tx["tran_currency"], tx["tran_total"]) == ("SAR", "100.00")


@pytest.mark.anyio
async def test_full_card_number_is_never_stored_or_returned(gw: Gateway) -> None:
    created = await gw.create_page(tokenise=2)
    paid = await gw.pay(created, VISA, cvv="4729")
    everything = [
        str(paid),
        (await gw.http.get("/_sim/transactions")).text,
        (await gw.query(tran_ref=created["tran_ref"])).text,
        (await gw.http.get(f"/payment/page/{page_id(created)}")).text,
        repr(gw.sim.engine.transactions),
        repr(gw.sim.engine.tokens),
    ]
    cvv_alone = re.compile(r"(?<![0-9A-Za-z])4729(?![0-9A-Za-z])")
    assert not any(VISA in text or cvv_alone.search(text) for text in everything)


@pytest.mark.anyio
async def test_transaction_object_has_paytabs_key_order(gw: Gateway) -> None:
    tx = await gw.paid_transaction(
        customer_details={"name": "A B", "email": "a@b.com"},
        shipping_details={"city": "Riyadh"},
        user_defined={"udf1": "x"},
        customer_ref="c-1",
        tokenise=2,
    )
    assert list(tx) == [
        "tran_ref",
        "merchant_id",
        "profile_id",
        "cart_id",
        "cart_description",
        "cart_currency",
        "cart_amount",
        "tran_currency",
        "tran_total",
        "tran_type",
        "tran_class",
        "customer_ref",
        "customer_details",
        "shipping_details",
        "payment_result",
        "payment_info",
        "token",
        "user_defined",
    ]
    assert list(tx["payment_result"]) == [
        "response_status",
        "response_code",
        "response_message",
        "acquirer_ref",
        "cvv_result",
        "avs_result",
        "transaction_time",
    ]
    assert tx["payment_result"]["transaction_time"] == "2025-01-29T09:00:00Z"
    assert re.fullmatch(r"TRAN0001\.[0-9A-F]{8}\.[0-9A-F]{8}", tx["payment_result"]["acquirer_ref"])
    assert re.fullmatch(r"[0-9A-F]{32}", tx["token"])


@pytest.mark.anyio
async def test_page_shows_escaped_amount_and_description(gw: Gateway) -> None:
    description = "<script>alert(1)</script> طلب رقم 1 🎉 & more"
    created = await gw.create_page(cart_description=description, cart_amount="12.5")
    response = await gw.http.get(f"/payment/page/{page_id(created)}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; طلب رقم 1 🎉 &amp; more" in html
    assert "12.50 SAR" in html
    [form] = forms_of(html)
    assert form["action"] == f"/payment/page/{page_id(created)}"
    assert {"card_number", "expiry_month", "expiry_year", "cvv", "cardholder_name"} <= set(
        form["fields"]
    )
    assert 'value="pay"' in html
    assert 'value="cancel"' in html


@pytest.mark.anyio
async def test_browser_payment_posts_signed_fields_back_to_return_url(gw: Gateway) -> None:
    created = await gw.create_page(
        customer_details={"email": "buyer@example.com"}, **{"return": RETURN_URL}
    )
    response = await gw.http.post(
        f"/payment/page/{page_id(created)}",
        data={
            "card_number": "4111 1111 1111 1111",
            "expiry_month": "12",
            "expiry_year": "30",
            "cvv": "123",
            "cardholder_name": "A Buyer",
            "action": "pay",
        },
    )
    assert response.status_code == 200
    [form] = forms_of(response.text)
    assert (form["action"], form["method"]) == (RETURN_URL, "post")
    fields: dict[str, str] = form["fields"]
    assert sorted(fields) == [
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
    ]
    assert fields["respStatus"] == "A"
    assert fields["customerEmail"] == "buyer@example.com"
    assert (fields["tranRef"], fields["cartId"]) == (created["tran_ref"], "cart-1")
    assert (fields["acquirerMessage"], fields["token"]) == ("", "")
    assert fields["signature"] == independent_return_signature(fields, KEY)
    [tx] = await gw.sim_transactions()
    assert tx["payment_info"]["expiryYear"] == 2030


@pytest.mark.anyio
async def test_three_d_secure_html_flow(gw: Gateway) -> None:
    created = await gw.create_page(**{"return": RETURN_URL})
    pid = page_id(created)
    challenge = await gw.http.post(
        f"/payment/page/{pid}",
        data={
            "card_number": "4000000000000002",
            "expiry_month": "1",
            "expiry_year": "2031",
            "cvv": "123",
            "action": "pay",
        },
    )
    assert challenge.status_code == 200
    assert "Complete authentication" in challenge.text
    [form] = forms_of(challenge.text)
    assert form["action"] == f"/payment/page/{pid}/3ds"
    unpaid = (await gw.query(tran_ref=created["tran_ref"])).json()
    assert "payment_result" not in unpaid
    assert "Complete authentication" in (await gw.http.get(f"/payment/page/{pid}")).text

    done = await gw.http.post(form["action"])
    [back] = forms_of(done.text)
    assert back["fields"]["respStatus"] == "A"
    paid = (await gw.query(tran_ref=created["tran_ref"])).json()
    assert paid["payment_info"]["payment_description"] == "4000 00## #### 0002"


@pytest.mark.anyio
async def test_three_d_secure_step_without_a_pending_card_is_refused(gw: Gateway) -> None:
    created = await gw.create_page()
    response = await gw.http.post(f"/payment/page/{page_id(created)}/3ds")
    assert response.status_code == 409


@pytest.mark.anyio
async def test_cancel_button_cancels(gw: Gateway) -> None:
    created = await gw.create_page(**{"return": RETURN_URL})
    response = await gw.http.post(f"/payment/page/{page_id(created)}", data={"action": "cancel"})
    [form] = forms_of(response.text)
    fields = form["fields"]
    assert (fields["respStatus"], fields["respCode"], fields["respMessage"]) == (
        "C",
        "321",
        "Cancelled",
    )
    assert fields["signature"] == independent_return_signature(fields, KEY)
    tx = (await gw.query(tran_ref=created["tran_ref"])).json()
    assert tx["payment_result"]["response_status"] == "C"
    assert "payment_info" not in tx


@pytest.mark.anyio
async def test_cancel_through_test_api(gw: Gateway) -> None:
    created = await gw.create_page()
    response = await gw.http.post(f"/_sim/pages/{page_id(created)}/pay", json={"cancel": True})
    paid: JsonObject = response.json()
    assert paid["transaction"]["payment_result"]["response_status"] == "C"
    assert paid["return"] == {"method": None, "url": None, "fields": {}}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("form", "error", "field"),
    [
        ({"card_number": "4111111111111112"}, "The card number is not valid.", "card_number"),
        ({"card_number": "4111"}, "The card number is not valid.", "card_number"),
        ({"expiry_year": "2024"}, "The card has expired.", "expiry_month"),
        ({"expiry_month": "13"}, "The expiry date is not valid.", "expiry_month"),
        ({"cvv": "12"}, "The security code (CVV) must be 3 or 4 digits.", "cvv"),
    ],
)
async def test_bad_card_shows_the_form_again(
    gw: Gateway, form: dict[str, str], error: str, field: str
) -> None:
    created = await gw.create_page()
    entered = {"card_number": VISA, "expiry_month": "12", "expiry_year": "2030", "cvv": "123"}
    response = await gw.http.post(
        f"/payment/page/{page_id(created)}", data={**entered, **form, "action": "pay"}
    )
    assert response.status_code == 400
    assert escape(error) in response.text
    assert len(forms_of(response.text)) == 1
    # The field the error is about is marked, tied to the message and focused; only that one.
    marked = re.findall(r'<input id="(\w+)"[^>]*aria-invalid="true" aria-describedby="problem"'
                        r" autofocus", response.text)  # fmt: skip
    assert marked == [field]
    assert '<p id="problem" class="error" role="alert">' in response.text
    assert (
        'id="card_number" name="card_number" autocomplete="cc-number" inputmode="numeric" dir="ltr"'
        in response.text
    )
    tx = (await gw.query(tran_ref=created["tran_ref"])).json()
    assert "payment_result" not in tx


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"card_number": "4111111111111112"}, "رقم البطاقة غير صالح."),
        ({"expiry_year": "2024"}, "انتهت صلاحية البطاقة."),
        ({"expiry_month": "13"}, "تاريخ انتهاء الصلاحية غير صالح."),
        ({"cvv": "12"}, "يجب أن يتكون رمز التحقق (CVV) من 3 أو 4 أرقام."),
    ],
)
async def test_an_arabic_page_says_what_is_wrong_in_arabic(
    gw: Gateway, form: dict[str, str], said: str
) -> None:
    # The page, its labels and "enter the CVV again" were Arabic; the error itself was not.
    created = await gw.create_page(paypage_lang="ar")
    entered = {"card_number": VISA, "expiry_month": "12", "expiry_year": "2030", "cvv": "123"}
    response = await gw.http.post(
        f"/payment/page/{page_id(created)}", data={**entered, **form, "action": "pay"}
    )
    assert response.status_code == 400
    assert escape(said) in response.text
    assert "not valid" not in response.text
    assert "expired" not in response.text


@pytest.mark.anyio
async def test_non_luhn_number_through_test_api_is_refused(gw: Gateway) -> None:
    created = await gw.create_page()
    response = await gw.http.post(
        f"/_sim/pages/{page_id(created)}/pay", json={"card_number": "4111111111111112"}
    )
    assert response.status_code == 422
    assert (await gw.sim_transactions())[0].get("payment_result") is None


@pytest.mark.anyio
async def test_used_page_is_gone(gw: Gateway) -> None:
    created = await gw.create_page()
    await gw.pay(created)
    assert (await gw.http.get(f"/payment/page/{page_id(created)}")).status_code == 410
    again = await gw.http.post(f"/_sim/pages/{page_id(created)}/pay", json={"card_number": VISA})
    assert again.status_code == 410


@pytest.mark.anyio
async def test_unknown_page_is_not_found(gw: Gateway) -> None:
    assert (await gw.http.get("/payment/page/" + "0" * 32)).status_code == 404


@pytest.mark.anyio
async def test_page_expires_after_default_ttl(gw: Gateway, clock: FakeClock) -> None:
    created = await gw.create_page()
    clock.advance(20 * 60 - 1)
    assert (await gw.http.get(f"/payment/page/{page_id(created)}")).status_code == 200
    clock.advance(1)
    response = await gw.http.get(f"/payment/page/{page_id(created)}")
    assert response.status_code == 410
    assert "expired" in response.text


@pytest.mark.anyio
async def test_page_expires_after_requested_ttl(gw: Gateway, clock: FakeClock) -> None:
    created = await gw.create_page(paypage_ttl=1)
    clock.advance(61)
    response = await gw.http.post(f"/_sim/pages/{page_id(created)}/pay", json={"card_number": VISA})
    assert response.status_code == 410


@pytest.mark.anyio
async def test_return_using_get_redirects_with_signed_query(gw: Gateway) -> None:
    created = await gw.create_page(return_using_get=True, **{"return": RETURN_URL + "?order=7"})
    response = await gw.http.post(
        f"/payment/page/{page_id(created)}",
        data={"card_number": VISA, "expiry_month": "12", "expiry_year": "2030", "cvv": "123"},
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    query = dict(parse_qsl(location.query))
    assert query.pop("order") == "7"  # the merchant's own parameter, not signed
    assert sorted(query) == ["cartId", "respCode", "respStatus", "signature", "tranRef"]
    assert query["signature"] == independent_return_signature(query, KEY)


@pytest.mark.anyio
async def test_test_api_returns_the_browser_return(gw: Gateway) -> None:
    created = await gw.create_page(**{"return": RETURN_URL})
    paid = await gw.pay(created, "4000000000000010")
    back = paid["return"]
    assert (back["method"], back["url"]) == ("POST", RETURN_URL)
    assert back["fields"]["respStatus"] == "D"
    assert back["fields"]["signature"] == independent_return_signature(back["fields"], KEY)


@pytest.mark.anyio
async def test_without_return_url_the_page_shows_the_result(gw: Gateway) -> None:
    created = await gw.create_page()
    response = await gw.http.post(
        f"/payment/page/{page_id(created)}",
        data={"card_number": VISA, "expiry_month": "12", "expiry_year": "2030", "cvv": "123"},
    )
    assert response.status_code == 200
    assert '<strong class="status">A</strong>' in response.text
    assert created["tran_ref"] in response.text


@pytest.mark.anyio
async def test_amount_over_profile_limit_is_declined_when_paid(clock: FakeClock) -> None:
    profile = Profile(PROFILE_ID, KEY, transaction_limit=Decimal(50))
    async with gateway(sim_config(clock, profiles=[profile])) as gw:
        tx = await gw.paid_transaction(cart_amount="50.01")
    result = tx["payment_result"]
    assert (result["response_status"], result["response_code"]) == ("D", "325")
    assert result["response_message"] == "Merchant limits exceeded"


@pytest.mark.anyio
async def test_token_only_when_customer_saves_the_card(gw: Gateway) -> None:
    created = await gw.create_page(tokenise=2, show_save_card=True)
    paid = await gw.pay(created, save_card=False)
    assert "token" not in paid["transaction"]
    created = await gw.create_page(tokenise=5, show_save_card=True, cart_id="cart-2")
    paid = await gw.pay(created, save_card=True)
    assert re.fullmatch(r"\d{16}", paid["transaction"]["token"])


@pytest.mark.anyio
async def test_declined_payment_gets_no_token(gw: Gateway) -> None:
    tx = await gw.paid_transaction("4000000000000010", tokenise=2)
    assert "token" not in tx


@pytest.mark.anyio
async def test_an_arabic_flow_stays_arabic_to_the_end(gw: Gateway) -> None:
    """The form was Arabic; the 3-D Secure step, the way back and a used page were English,
    and the Latin "3-D Secure" in a right-to-left heading came out as "D Secure-3"."""
    created = await gw.create_page(paypage_lang="ar", **{"return": RETURN_URL})
    pid = page_id(created)
    card = {"card_number": "4000000000000002", "expiry_month": "1", "expiry_year": "2031"}
    challenge = await gw.http.post(f"/payment/page/{pid}", data={**card, "cvv": "123",
                                                                 "action": "pay"})  # fmt: skip
    assert '<html lang="ar" dir="rtl">' in challenge.text
    assert "أكمل المصادقة" in challenge.text
    assert '<bdi dir="ltr">3-D Secure</bdi>' in challenge.text
    assert "Complete authentication" not in challenge.text
    [form] = forms_of(challenge.text)
    back = await gw.http.post(form["action"])
    assert '<html lang="ar" dir="rtl">' in back.text
    assert "جارٍ الرجوع إلى التاجر" in back.text
    used = await gw.http.get(f"/payment/page/{pid}")
    assert used.status_code == 410
    assert "استُخدمت الصفحة من قبل" in used.text


@pytest.mark.anyio
@pytest.mark.parametrize("asked", [None, True, "false", "true", 1])
async def test_the_card_page_is_not_cached_sniffed_or_framed_unless_created_framed(
    gw: Gateway, asked: object
) -> None:
    """A page that takes card numbers: no cache, no referrer, no MIME sniffing, and framing
    only in PayTabs' iframe mode (``framed: true``), which the merchant asks for at create;
    the string "false" is no yes."""
    framed = asked is True
    created = await gw.create_page(**({} if asked is None else {"framed": asked}))
    for response in (
        await gw.http.get(f"/payment/page/{page_id(created)}"),
        await gw.http.post(f"/payment/page/{page_id(created)}", data={"card_number": "1"}),
        await gw.http.get("/payment/page/no-such-page"),
    ):
        headers = response.headers
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy
        framed_page = framed and "no-such-page" not in str(response.url)
        assert ("frame-ancestors *" in policy) is framed_page
        assert ("frame-ancestors 'none'" in policy) is not framed_page
        assert headers.get("x-frame-options") == (None if framed_page else "DENY")


@pytest.mark.anyio
@pytest.mark.parametrize("card", [VISA, "4000000000000002"], ids=["frictionless", "3ds"])
async def test_a_form_sent_twice_to_a_paid_page_goes_back_to_the_merchant_again(
    gw: Gateway, card: str
) -> None:
    # A double click on Pay (or on the 3-D Secure step): the second POST used to get 410
    # "already used", the page the browser then showed, though the card was charged.
    created = await gw.create_page()
    pid = page_id(created)
    fields = {"card_number": card, "expiry_month": "1", "expiry_year": "2031", "cvv": "123"}
    first = await gw.http.post(f"/payment/page/{pid}", data={**fields, "action": "pay"})
    path = f"/payment/page/{pid}/3ds" if card != VISA else f"/payment/page/{pid}"
    if card != VISA:
        first = await gw.http.post(path)
    again = await gw.http.post(path, data={**fields, "action": "pay"} if card == VISA else None)
    assert first.status_code == again.status_code == 200
    assert forms_of(again.text) == forms_of(first.text)  # the same signed return
    assert len(await gw.sim_transactions()) == 1  # charged once
    assert (await gw.http.get(f"/payment/page/{pid}")).status_code == 410  # Back: still used
