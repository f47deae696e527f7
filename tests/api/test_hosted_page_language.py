"""``language`` on create reaches the hosted page (PayTabs' paypage_lang); the simulator's page
is a real Arabic page, helps autofill, keeps what was typed after an error and shows who pays.
Rendered in a real headless Chromium, with nothing loaded from outside 127.0.0.1."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from .api_support import DECLINED, Service, new_key
from .browser_support import Tab, Visit, browser

pytestmark = pytest.mark.anyio

AUTOFILL = (
    "card_number=cc-number",
    "expiry_month=cc-exp-month",
    "expiry_year=cc-exp-year",
    "cvv=cc-csc",
    "cardholder_name=cc-name",
)
READY = "!!document.querySelector('form input[name=card_number]')"
READS = {
    "lang": "document.documentElement.lang",
    "dir": "getComputedStyle(document.body).direction",
    "heading": "document.querySelector('h1').textContent",
    "labels": "[...document.querySelectorAll('label')].map(l => l.textContent).join('|')",
    "autocomplete": "[...document.querySelectorAll('input[autocomplete]')]"
    ".map(i => i.name + '=' + i.autocomplete).join(' ')",
    "name": "document.querySelector('#cardholder_name').value",
    "customer": "document.querySelector('.customer')?.textContent || ''",
    "viewport": "!!document.querySelector('meta[name=viewport]')",
}


async def _create(service: Service, **extra: Any) -> Any:
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": "12.50", "currency": "SAR", "description": "Order 1", **extra},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _visit(urls: list[str]) -> list[Visit]:
    with browser() as chromium:
        return [chromium.visit(url, READY, READS) for url in urls]


async def test_the_hosted_page_in_english_and_arabic(service: Service) -> None:
    customer = {"name": "Layla Haddad", "email": "layla@example.com"}
    english = await _create(service, language="en", customer=customer)
    arabic = await _create(service, language="ar", customer=customer)
    en, ar = await anyio.to_thread.run_sync(
        _visit, [english["redirect_url"], arabic["redirect_url"]]
    )
    for visit in (en, ar):
        assert visit.values["rendered"], visit
        assert visit.foreign_requests() == [], visit.foreign_requests()
        assert visit.values["viewport"]
        hints = visit.values["autocomplete"]
        for hint in AUTOFILL:
            assert hint in hints, hints
        assert visit.values["name"] == "Layla Haddad"  # pre-filled from the create
        assert "layla@example.com" in visit.values["customer"]
    assert (en.values["lang"], en.values["dir"]) == ("en", "ltr")
    assert "Card number" in en.values["labels"]
    assert (ar.values["lang"], ar.values["dir"]) == ("ar", "rtl")
    assert ar.values["heading"] == "ادفع"
    assert "رقم البطاقة" in ar.values["labels"]
    assert "Card number" not in ar.values["labels"]


async def test_a_form_error_keeps_what_was_typed_but_the_cvv(service: Service) -> None:
    payment = await _create(service)
    typed = {"card_number": DECLINED, "expiry_month": "13", "expiry_year": "2031",
             "cvv": "987", "cardholder_name": "Omar", "action": "pay"}  # fmt: skip
    async with httpx.AsyncClient() as shopper:
        page = await shopper.post(payment["redirect_url"], data=typed)
    assert page.status_code == 400
    assert 'role="alert"' in page.text
    assert f'value="{DECLINED}"' in page.text
    assert 'value="2031"' in page.text
    assert 'value="Omar"' in page.text
    assert "987" not in page.text  # the CVV is never written back
    assert "Enter the CVV again." in page.text


async def test_an_unknown_language_is_refused(service: Service) -> None:
    response = await service.api.post(
        "/payments/v2/create",
        json={"amount": "12.50", "currency": "SAR", "description": "Order 1", "language": "fr"},
        headers={"Idempotency-Key": new_key()},
    )
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["language"]


def _phone_visit(url: str) -> tuple[int, int, list[str]]:
    with browser() as chromium:
        tab = Tab(chromium, width=360, height=800)
        try:
            tab.go(url, "card_number")
            widths = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            return int(widths[0]), int(widths[1]), tab.requested()
        finally:
            tab.close()


async def test_a_long_unbroken_description_fits_a_phone_and_no_favicon_is_asked_for(
    service: Service,
) -> None:
    # The API allows 128 characters; unbroken, they made the page 1459 px wide at 360 px.
    payment = await _create(service, description="X" * 128)
    scroll_width, viewport, requested = await anyio.to_thread.run_sync(
        _phone_visit, payment["redirect_url"]
    )
    assert scroll_width <= viewport == 360
    assert not [url for url in requested if url.endswith("/favicon.ico")], requested
