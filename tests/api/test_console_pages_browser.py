"""The console used as a person would, in a real headless Chromium, for what the walk in
``test_console_browser`` does not reach: an older page of payments that stays still while
nothing changes, Back after signing out, and a form that a double click sent twice."""

from __future__ import annotations

import re
import time
from typing import Any

import anyio
import pytest

from paytabs_guard.entrypoints.api.console import routes
from paytabs_guard.service import events as event_cases
from paytabs_simulator.server import RunningSimulator

from .api_support import ADMIN_KEY, Service
from .browser_support import Tab, browser
from .relay_support import drained
from .test_events_api import service_with_sinks

pytestmark = pytest.mark.anyio


def _main_frame_loads(tab: Tab) -> int:
    return sum(
        1
        for event in tab.events
        if event.get("method") == "Page.frameNavigated"
        and "parentId" not in event["params"]["frame"]
    )


def _polls(tab: Tab) -> int:
    return sum("/console/live.json" in url for url in tab.requested())


def _read_older_page(url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with browser() as chromium:
        tab = Tab(chromium)
        tab.go(f"{url}/console", "Admin API key")
        tab.type_into("#key", ADMIN_KEY)
        first = tab.wait_for('class="js"')
        older = re.search(r'href="(/console\?after=[^"]+)"', first)
        assert older is not None, "no link to older payments"
        tab.events.clear()
        tab.go(url + older.group(1).replace("&amp;", "&"), 'class="js"')
        # Three polls (one every 3 s) with nothing changing: the page must stay as it is.
        deadline = time.monotonic() + 30
        while _polls(tab) < 3 and time.monotonic() < deadline:
            tab.evaluate("1")  # collects the browser's events meanwhile
            time.sleep(0.2)  # a real browser polling every 3 s; not spinning a core
        seen["polls"] = _polls(tab)
        seen["loads"] = _main_frame_loads(tab)
        seen["live"] = [u for u in tab.requested() if "/console/live.json" in u]
        tab.close()
    return seen


async def test_an_older_page_of_payments_does_not_reload_itself_while_nothing_changes(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its poll asked about the first page: the stamps never matched, and the page reloaded
    # every 3 seconds (scroll position lost, the list flickering) for as long as it was open.
    monkeypatch.setattr(routes, "_PAGE", 2)
    for number in range(3):
        await service.create("5.00", description=f"Order {number}")
    seen = await anyio.to_thread.run_sync(lambda: _read_older_page(service.url))
    assert seen["polls"] >= 3, seen
    assert seen["loads"] == 1, seen
    assert all("after=" in url for url in seen["live"]), seen["live"]


def _back(tab: Tab, url: str) -> str:
    """Press Back; the page's HTML once the browser shows ``url`` again."""
    # Through the protocol's history, as the Back button goes: a script's history.back()
    # could lose its own answer to the navigation it starts ("Inspected target navigated").
    history = tab._call("Page.getNavigationHistory", {})
    previous = history["entries"][history["currentIndex"] - 1]
    tab._call("Page.navigateToHistoryEntry", {"entryId": previous["id"]})
    deadline = time.monotonic() + tab.chromium.timeout
    while True:
        try:
            if tab.evaluate("location.href") == url and tab.evaluate("document.readyState") != (
                "loading"
            ):
                return tab.html()
        except (AssertionError, RuntimeError):  # the document was replaced between two calls
            pass
        assert time.monotonic() < deadline, f"Back never reached {url}"
        time.sleep(0.05)  # a real browser going back; polling without spinning a core


def _sign_out_and_go_back(url: str, payment_id: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    with browser() as chromium:
        tab = Tab(chromium)
        timeline = f"{url}/console/payments/{payment_id}"
        tab.go(timeline, "Admin API key")
        tab.type_into("#key", ADMIN_KEY)
        seen["timeline"] = tab.wait_for("Events and deliveries")
        tab.go(f"{url}/console/breakers", "Recovery probes")
        tab.click("header form button")
        tab.wait_for("Admin API key")
        seen["breakers"] = _back(tab, f"{url}/console/breakers")
        seen["back"] = _back(tab, timeline)
        tab.close()
    return seen


async def test_after_signing_out_back_does_not_show_the_pages_seen_before(
    service: Service,
) -> None:
    # Chromium kept the timeline in its back/forward cache and showed it again, customer and
    # all, to the next person at the browser who pressed Back twice: signing out now empties
    # the origin's caches (Clear-Site-Data).
    payment = await service.create(description="Private order",
                                   metadata={"customer": "Noura Al-Harbi"})  # fmt: skip
    seen = await anyio.to_thread.run_sync(lambda: _sign_out_and_go_back(service.url, payment["id"]))
    assert "Noura Al-Harbi" in seen["timeline"]
    assert "Admin API key" in seen["breakers"]
    assert "Noura Al-Harbi" not in seen["back"]
    assert "Admin API key" in seen["back"]


def _double_click_replay(url: str, clicked: anyio.Event) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with browser() as chromium:
        tab = Tab(chromium)
        tab.go(f"{url}/console/dead-letters", "Admin API key")
        tab.type_into("#key", ADMIN_KEY)
        tab.wait_for('class="js"')
        button = tab._node("td button")
        tab._call("DOM.scrollIntoViewIfNeeded", {"nodeId": button})
        quad = tab._call("DOM.getContentQuads", {"nodeId": button})["quads"][0]
        x, y = (quad[0] + quad[4]) / 2, (quad[1] + quad[5]) / 2
        tab.events.clear()
        for count in (1, 2):  # a double click, as an impatient person makes one
            time.sleep(0.15 * (count - 1))  # a person's double click: clicks 150 ms apart
            for kind in ("mousePressed", "mouseReleased"):
                tab._call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                          "button": "left", "clickCount": count})  # fmt: skip
        anyio.from_thread.run_sync(clicked.set)  # both clicks are in: the replay may answer
        seen["page"] = tab.wait_for('role="status"')
        seen["posts"] = [
            event["params"]["request"]["url"]
            for event in tab.events
            if event.get("method") == "Network.requestWillBeSent"
            and event["params"]["request"]["method"] == "POST"
        ]
        tab.close()
    return seen


async def test_a_double_click_on_replay_sends_one_replay_and_says_what_it_did(
    sim: RunningSimulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both clicks were sent: the first replayed the letter, the browser dropped its answer
    # and showed the second's, "Put back to pending: 0", as if nothing had been done.
    replay = event_cases.replay_dead_letters
    clicked = anyio.Event()

    async def busy_replay(*args: Any, **kwargs: Any) -> int:
        await clicked.wait()  # a busy database: the second click comes before the answer
        return await replay(*args, **kwargs)

    monkeypatch.setattr(event_cases, "replay_dead_letters", busy_replay)
    async with service_with_sinks(sim, sqlite_url, EVENTS_MAX_ATTEMPTS="1") as (
        service,
        merchant,
        _seen,
    ):
        merchant.down = True
        await service.create(description="Its events die")
        await drained(service)
        seen = await anyio.to_thread.run_sync(lambda: _double_click_replay(service.url, clicked))
    assert seen["posts"] == [f"{service.url}/console/dead-letters/replay"], seen["posts"]
    assert "Put back to pending: 1." in seen["page"]
