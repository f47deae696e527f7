"""The console over real HTTP, given a session cookie or a CSRF token that is not ASCII: no
session and a wrong token, never a 500 (``hmac.compare_digest`` refuses a str that is not
ASCII, and ``int`` refuses the digits ``str.isdigit`` takes beyond 0-9)."""

from __future__ import annotations

import pytest

from .api_support import Service
from .console_support import signed_in
from .front_door_support import send_raw

pytestmark = pytest.mark.anyio


async def _admin_client_id(service: Service) -> str:
    # Not a secret: the first part of every console cookie, an expired one's too.
    async with signed_in(service) as browser:
        return str(browser.cookies["pg_console"]).split(".")[0]


@pytest.mark.parametrize(
    "forged",
    [
        b"{id}.9999999999.00.\xe9",  # a latin-1 byte in the MAC
        "{id}.9999999999.00.\u00e9".encode(),  # the same letter in UTF-8, as a browser sends it
        b'"{id}.9999999999.00.\\351"',  # the byte as a quoted cookie's octal escape
        b"{id}.\xb2.00.ab",  # an expiry "\u00b2": isdigit() says yes, int() raises
        b'"{id}.\\262.00.ab"',  # the same expiry, quoted
    ],
    ids=["latin-1-mac", "utf-8-mac", "quoted-octal-mac", "superscript-expiry", "quoted-expiry"],
)
async def test_a_cookie_with_the_admin_client_id_and_non_ascii_is_no_session(
    service: Service, forged: bytes
) -> None:
    client_id = await _admin_client_id(service)
    # send_raw writes the head as latin-1: each byte goes out as it is written here.
    wire = forged.replace(b"{id}", client_id.encode()).decode("latin-1")
    cookie = f"pg_console={wire}"
    for path in ("/console", "/console/breakers"):
        page = await send_raw(service.url, "GET", path, {"Cookie": cookie})
        assert page.status == 401, page.body[:300]
        assert b"name='key'" in page.body  # the sign-in form, as for any invalid cookie
    live = await send_raw(service.url, "GET", "/console/live.json", {"Cookie": cookie})
    assert live.status == 401
    assert live.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "token", ["%C3%A9", "%B2", "%E2%91%A0"], ids=["e-acute", "latin-1", "circled"]
)
async def test_a_csrf_token_that_is_not_ascii_is_a_wrong_token(
    service: Service, token: str
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with signed_in(service) as browser:
        replay = await browser.post(
            "/console/dead-letters/replay", content=f"csrf={token}&id=1", headers=form
        )
        assert replay.status_code == 403, replay.text
        logout = await browser.post("/console/logout", content=f"csrf={token}", headers=form)
        assert logout.status_code == 403, logout.text
        assert "The form expired" in logout.text
        # Still signed in: the refused Sign out ended nothing.
        assert (await browser.get("/console")).status_code == 200


async def test_a_card_number_in_the_address_is_not_repeated_on_a_page(service: Service) -> None:
    # The API's 404s and 422s hide a card number sent as an id or a name; the console's pages
    # repeated it: a payment's 404 page, the search box and the language switch's links.
    card = "4111111111111111"
    async with signed_in(service) as browser:
        for path, status in (
            (f"/console/payments/{card}", 404),
            (f"/console?q={card}", 200),
            ("/console?q=4111 1111 1111 1111&state=completed", 200),
        ):
            page = await browser.get(path)
            assert page.status_code == status, page.text
            assert "1111" not in page.text
        # A reference whose digits pass the Luhn check but are no card (glued to letters)
        # is shown as typed.
        kept = await browser.get("/console?q=TST2634047856947")
        assert "TST2634047856947" in kept.text
