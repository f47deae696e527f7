"""The console used as a person would, in a real headless Chromium, for what the walk in
``test_console_browser`` does not reach: an older page of payments that stays still while
nothing changes, and forms that a double click sends twice."""

from __future__ import annotations

import re
import time
from typing import Any

import anyio
import pytest

from paytabs_guard.entrypoints.api.console import routes

from .api_support import ADMIN_KEY, Service
from .browser_support import Tab, browser

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
