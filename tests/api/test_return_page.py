"""The shopper's return page (no return_url): English or Arabic from Accept-Language, mobile
first, with amount, order and reference, no external assets; rendered in headless Chromium."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from paytabs_guard.entrypoints.api.return_page import language

from .api_support import DECLINED, VISA, Service, new_key, signed_return
from .browser_support import Visit, browser

pytestmark = pytest.mark.anyio

READY = "!!document.querySelector('h1')"
READS = {
    "lang": "document.documentElement.lang",
    "dir": "getComputedStyle(document.body).direction",
    "viewport": "document.querySelector('meta[name=viewport]')?.content || ''",
    "title": "document.querySelector('h1').textContent",
    "text": "document.body.innerText",
    "width": "document.documentElement.scrollWidth <= window.innerWidth",
}


async def _paid(service: Service, card: str) -> dict[str, Any]:
    payment: dict[str, Any] = await service.create("12.50", "SAR", description="Order 1001")
    await service.pay(payment, card)
    await service.callbacks_done()
    return payment


def _fields(payment: dict[str, Any], status: str) -> dict[str, str]:
    return signed_return(
        {
            "tranRef": payment["tran_ref"],
            "cartId": payment["cart_id"],
            "respStatus": status,
            "respCode": "G1",
            "respMessage": "x",
            "customerEmail": "",
            "acquirerMessage": "",
            "acquirerRRN": "",
            "token": "",
        }
    )


def _visit(pages: list[tuple[str, str]]) -> list[Visit]:
    """(url, Accept-Language) pairs, each in a fresh tab (a GET with PayTabs' signed fields, as
    PayTabs sends the shopper back with return_using_get)."""
    with browser() as chromium:
        return [
            chromium.visit(url, READY, READS, headers={"Accept-Language": accept})
            for url, accept in pages
        ]


def test_accept_language_picks_arabic_only_when_preferred() -> None:
    assert language("ar-SA,ar;q=0.9,en;q=0.8") == "ar"
    assert language("en-US,en;q=0.9,ar;q=0.8") == "en"
    assert language("fr-FR, ar;q=0.5") == "ar"
    assert language(None) == "en"
    assert language("de") == "en"
    assert language("ar;q=0") == "en"


async def test_the_return_page_in_english_and_arabic(service: Service) -> None:
    paid = await _paid(service, VISA)
    declined = await _paid(service, DECLINED)
    query = httpx.QueryParams(_fields(paid, "A"))
    paid_url = f"{service.url}/payments/v2/return?{query}"
    declined_url = f"{service.url}/payments/v2/return?{httpx.QueryParams(_fields(declined, 'D'))}"
    en, ar, failed, direct = await anyio.to_thread.run_sync(
        _visit,
        [
            (paid_url, "en-US,en;q=0.9"),
            (paid_url, "ar-SA,ar;q=0.9,en;q=0.5"),
            (declined_url, "en"),
            (f"{service.url}/payments/v2/return", "en"),
        ],
    )
    for visit in (en, ar, failed, direct):
        assert visit.values["rendered"], visit
        assert visit.foreign_requests() == [], visit.foreign_requests()
        assert "width=device-width" in visit.values["viewport"]
        assert visit.values["width"]  # no sideways scrolling on the phone-sized window
    assert (en.values["lang"], en.values["dir"]) == ("en", "ltr")
    assert en.values["title"] == "Payment received"
    for expected in ("12.50 SAR", "Order 1001", paid["id"]):
        assert expected in en.values["text"]
    assert (ar.values["lang"], ar.values["dir"]) == ("ar", "rtl")
    assert ar.values["title"] == "تم استلام الدفعة"
    assert "12.50 SAR" in ar.values["text"]
    assert "No money was taken" in failed.values["text"]
    # Opened directly: a sentence for a shopper, not a signature error.
    assert "There is no payment result to show here" in direct.values["text"]
    assert "signed" not in direct.values["text"]


async def test_an_expired_card_is_not_called_an_expired_page(service: Service) -> None:
    payment = await _paid(service, "4000000000000069")
    response = await service.anonymous.get(
        "/payments/v2/return", params=_fields(payment, "D"), headers={"Accept-Language": "en"}
    )
    assert response.status_code == 200
    assert "Your card has expired" in response.text
    assert "page expired" not in response.text


async def test_a_payment_with_a_return_url_still_redirects(service: Service) -> None:
    created = await service.api.post(
        "/payments/v2/create",
        json={
            "amount": "12.50",
            "currency": "SAR",
            "description": "Order 1",
            "return_url": "https://shop.example/done",
        },
        headers={"Idempotency-Key": new_key()},
    )
    payment = created.json()
    response = await service.anonymous.get("/payments/v2/return", params=_fields(payment, "A"))
    assert response.status_code == 303
    assert response.headers["location"].startswith("https://shop.example/done?payment_id=")


BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


async def test_bidi_controls_in_the_description_are_shown_not_obeyed(service: Service) -> None:
    # "Order 1001 <RLO>05.21 RAS" would read as "Order 1001 SAR 12.50" if the override were
    # obeyed; every bidi control is shown as a marker, and each value sits in its own <bdi>.
    description = "Order 1001 \u202e05.21 RAS " + "".join(BIDI)
    payment: dict[str, Any] = await service.create("12.50", "SAR", description=description)
    await service.pay(payment, VISA)
    await service.callbacks_done()
    response = await service.anonymous.get(
        "/payments/v2/return", params=_fields(payment, "A"), headers={"Accept-Language": "en"}
    )
    assert response.status_code == 200
    page = response.text
    for control in BIDI:
        assert control not in page
    assert "<bdi>Order 1001 [U+202E]05.21 RAS [U+202A][U+202B]" in page
    assert "[U+2069]</bdi>" in page
    assert "<bdi>12.50 SAR</bdi>" in page
    assert f"<bdi>{payment['id']}</bdi>" in page
