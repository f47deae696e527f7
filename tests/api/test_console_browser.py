"""The operator console in a real headless Chromium, with JavaScript on and off: sign in with
the admin key, search, open a payment's timeline, see the breakers and dead letters, switch
to Arabic; with JavaScript on the timeline also updates itself when the payment changes.

The screenshots in docs/img/console-*.png (shown by docs/console.md) are taken here: every
run takes them (into the test's temporary folder), and ``UPDATE_SCREENSHOTS=1`` writes them
over the ones in docs/img (ids and times differ per run, so an ordinary run leaves the tree
clean).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest

from paytabs_simulator.server import RunningSimulator

from .api_support import ADMIN_KEY, DECLINED, Service
from .browser_support import Tab, browser
from .relay_support import drained
from .test_events_api import service_with_sinks

pytestmark = pytest.mark.anyio
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PHONE = {"width": 390, "height": 844}


async def _scene(service: Service) -> dict[str, Any]:
    """Something worth looking at: paid, refunded, declined and waiting payments, a breaker
    that was open for a while, and events (one of which the merchant's endpoint refused)."""
    plan = await service.create("150.000", "KWD", description="Annual plan",
                                metadata={"customer": "Noura <b>Al-Harbi</b>"})  # fmt: skip
    await service.pay(plan)
    ebook = await service.create("49.00", "SAR", description="Ebook")
    await service.pay(ebook)
    await service.pay(await service.create("20.00", "AED", description="Gift card"), DECLINED)
    await service.create("10.00", "SAR", description="Waiting for the shopper")
    await service.callbacks_done()
    refund = await service.admin.post(
        f"/payments/v2/{plan['id']}/refund", json={"amount": "50.000"},
        headers={"Idempotency-Key": "console-refund-1"},
    )  # fmt: skip
    assert refund.status_code in (200, 202), refund.text
    await service.admin.post("/payments/v2/circuit-breaker/create/open")
    await service.admin.post("/payments/v2/circuit-breaker/create/reset")
    await drained(service)
    return {"plan": await service.get(plan["id"]), "ebook": await service.get(ebook["id"])}


def _walk(
    service: Service, scene: dict[str, Any], shots: Path, *, javascript: bool
) -> dict[str, Any]:
    """Runs in a worker thread: the service keeps serving on the test's event loop."""
    url, plan, ebook = service.url, scene["plan"], scene["ebook"]
    seen: dict[str, Any] = {}
    with browser() as chromium:
        tab = Tab(chromium, javascript=javascript)
        # Straight to a payment: the console asks for the key first, then goes there.
        login = tab.go(f"{url}/console/payments/{plan['id']}", "Admin API key")
        assert ADMIN_KEY not in login
        tab.type_into("#key", ADMIN_KEY)
        # With JavaScript on, the page is read once its script has marked it: the text comes
        # with the HTML, the mark a moment later (a busy machine took the snapshot between).
        ready = 'class="js"' if javascript else "Events and deliveries"
        tab.wait_for("Events and deliveries")
        seen["timeline"] = tab.wait_for(ready)
        # Search by cart id with the form, then open the payment from the results.
        tab.go(f"{url}/console", "Payment id, cart id or tran_ref")
        tab.type_into("#q", plan["cart_id"])
        # The results page echoes the search in the field's value attribute (typing does not).
        seen["search"] = tab.wait_for(f'value="{plan["cart_id"]}"')
        tab.click(f"a[href='/console/payments/{plan['id']}']")
        tab.wait_for("Events and deliveries")
        seen["opened"] = tab.wait_for(ready)
        suffix = "" if javascript else "-nojs"
        if javascript:
            tab.screenshot(shots / "console-timeline.png")
            tab.go(f"{url}/console", "Waiting for the shopper")
            tab.screenshot(shots / "console-payments.png")
            seen["breakers"] = tab.go(f"{url}/console/breakers", "Recovery probes")
            tab.screenshot(shots / "console-breakers.png")
            seen["dead"] = tab.go(f"{url}/console/dead-letters", "webhook:")
            tab.screenshot(shots / "console-dead-letters.png")
            # Live: the page notices a refund made elsewhere and shows it without a click.
            tab.go(f"{url}/console/payments/{ebook['id']}", "Events and deliveries")
            anyio.from_thread.run(_refund, service, ebook["id"])
            seen["live"] = tab.wait_for("partially_refunded")
            # Signed out elsewhere (another tab): the page says so and stops polling, where
            # it went on asking every 3 s and showed stale data as live.
            cookies = {c["name"]: c["value"] for c in tab._call("Network.getCookies")["cookies"]}
            csrf = tab.evaluate("document.querySelector(\"input[name='csrf']\").value")
            out = httpx.post(f"{url}/console/logout", data={"csrf": csrf}, cookies=cookies)
            assert out.status_code == 303, out.text
            seen["signed_out"] = tab.wait_for('role="alert">You are signed out')  # unhidden
            # and arms no next poll (the script polls only while the page names its feed)
            seen["still_polls"] = tab.evaluate("document.body.hasAttribute('data-live')")
            tab.go(f"{url}/console", "Admin API key")  # back in, for the phone's pages
            tab.type_into("#key", ADMIN_KEY)
            tab.wait_for("Payment id, cart id or tran_ref")
        seen["requests"] = tab.requested()
        tab.close()
        phone = Tab(chromium, javascript=javascript, **PHONE)
        phone.go(f"{url}/console/payments/{plan['id']}", "Events and deliveries")
        phone.screenshot(shots / f"console-timeline-phone{suffix}.png")
        seen["arabic"] = phone.go(f"{url}/console?lang=ar", "المدفوعات")
        if javascript:
            phone.screenshot(shots / "console-payments-ar-phone.png")
        phone.close()
    return seen


async def _refund(service: Service, payment_id: str) -> None:
    answer = await service.admin.post(
        f"/payments/v2/{payment_id}/refund", json={"amount": "9.00"},
        headers={"Idempotency-Key": "console-refund-2"},
    )  # fmt: skip
    assert answer.status_code in (200, 202), answer.text


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
async def test_an_operator_signs_in_searches_and_reads_a_timeline(
    sim: RunningSimulator, sqlite_url: str, javascript: bool, tmp_path: Path
) -> None:
    shots = DOCS_IMG if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    async with service_with_sinks(sim, sqlite_url, EVENTS_MAX_ATTEMPTS="1") as (
        service,
        merchant,
        _seen,
    ):
        merchant.down = True  # its deliveries die: something for the dead-letters page
        scene = await _scene(service)
        merchant.down = False
        seen = await anyio.to_thread.run_sync(
            lambda: _walk(service, scene, shots, javascript=javascript)
        )
    plan = scene["plan"]
    for page in (seen["timeline"], seen["opened"]):
        assert plan["id"] in page
        assert plan["tran_ref"] in page
        assert "partially_refunded" in page
        assert "50.000" in page
        assert "Noura &lt;b&gt;Al-Harbi&lt;/b&gt;" in page  # the customer's name, as text
        assert 'dir="ltr"' in page
        # The script marks the page when it runs: only with JavaScript on.
        assert ('class="js"' in page) is javascript
    assert f"/console/payments/{plan['id']}" in seen["search"]
    assert 'dir="rtl"' in seen["arabic"]
    assert 'lang="ar"' in seen["arabic"]
    # Nothing leaves the machine (data: URLs are the browser's own date-picker icon).
    foreign = [u for u in seen["requests"] if not u.startswith((service.url, "data:"))]
    assert foreign == []
    for name in ("console-timeline-phone", "console-timeline-phone-nojs"):
        if name.endswith("nojs") is not javascript:
            assert (shots / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    if javascript:
        assert "<svg" in seen["breakers"]
        assert 'data-state="forced_open"' in seen["breakers"]
        assert "webhook:" in seen["dead"]
        assert "9.00" in seen["live"]
        assert seen["still_polls"] is False
