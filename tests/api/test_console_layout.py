"""The console's layout in a real headless Chromium, measured rather than looked at: on a phone
(360 px) and a desktop (1280 px) no card needs sideways scrolling, identifiers never wrap, a
128-character description cannot crush the table, and each Replay button is on screen; in
Arabic, times, amounts and state changes keep their order, and text from outside cannot
reorder what follows it (bidi controls)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from paytabs_simulator.server import RunningSimulator

from .api_support import ADMIN_KEY
from .browser_support import Tab, browser
from .relay_support import drained
from .test_events_api import service_with_sinks

pytestmark = pytest.mark.anyio
LONG = "X" * 128  # the longest description the API takes, with nowhere to break
OVERRIDE = "note\u202e"  # RIGHT-TO-LEFT OVERRIDE left open at the end of a metadata key

# What a person would notice: sideways scrolling, ids over several lines, buttons off screen.
LAYOUT = """(() => {
  const line = el => parseFloat(getComputedStyle(el).lineHeight) || 20;
  const shown = el => el.getClientRects().length > 0;
  const cards = [...document.querySelectorAll('.card')];
  const codes = [...document.querySelectorAll('td code, dd code')].filter(shown);
  const buttons = [...document.querySelectorAll('td button')].filter(shown);
  const long = [...document.querySelectorAll('td bdi')].find(b => b.title.length === 128);
  return {
    page: document.documentElement.scrollWidth - innerWidth,
    scrolling: cards.filter(c => c.scrollWidth > c.clientWidth + 1).length,
    codes: codes.length,
    wrapped: codes.filter(c => c.getBoundingClientRect().height > 1.5 * line(c)).length,
    buttons: buttons.length,
    offscreen: buttons.filter(b => {
      const r = b.getBoundingClientRect(), card = b.closest('.card').getBoundingClientRect();
      return r.left < card.left || r.right > card.right || r.right > innerWidth;
    }).length,
    longLines: long ? Math.round(long.getBoundingClientRect().height / line(long)) : null,
  };
})()"""

# Where two pieces of text are drawn: is ``a`` left of ``b`` inside ``root``?
LEFT_OF = """((root, a, b) => {
  const at = needle => {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const i = n.data.indexOf(needle);
      if (i >= 0) {
        const r = document.createRange();
        r.setStart(n, i); r.setEnd(n, i + needle.length);
        return r.getBoundingClientRect().left;
      }
    }
    return null;
  };
  const x = at(a), y = at(b);
  return x === null || y === null ? null : x < y;
})"""


def _value(label: str) -> str:
    """The ``<dd>`` beside the ``<dt>`` that reads ``label`` (the payment's summary)."""
    return (
        f"[...document.querySelectorAll('dt')].find(d => d.textContent === {label!r})"
        ".nextElementSibling"
    )


# Which summary row, and which two pieces of its text should be drawn left to right.
ORDER = {
    "created": ("created", "{year}", "UTC"),
    "amount": ("amount", "9999.99", "SAR"),
    "sale": ("amount", "SAR", "(sale)"),
    "metadata": ("metadata", "=", "after"),
}
# The first state change with a "from": is "from" drawn left of "to", and which arrow is used?
TRANSITION = """(() => {
  const li = [...document.querySelectorAll('ol.timeline li')]
    .find(item => item.querySelectorAll('.pill').length === 2);
  const [from, to] = li.querySelectorAll('.pill');
  return {fromLeft: from.getBoundingClientRect().left < to.getBoundingClientRect().left,
          arrow: li.textContent.includes('→') ? '→' : li.textContent.includes('←') ? '←' : ''};
})()"""
LABELS = {
    "en": {"created": "Created", "amount": "Amount", "metadata": "Metadata"},
    "ar": {"created": "الإنشاء", "amount": "المبلغ", "metadata": "البيانات الوصفية"},
}


def _measure(url: str, payment: dict[str, Any]) -> dict[str, Any]:
    """Runs in a worker thread while the service serves on the test's event loop."""
    seen: dict[str, Any] = {}
    with browser() as chromium:
        tab = Tab(chromium, javascript=False)
        tab.go(f"{url}/console/login", "Admin API key")
        tab.type_into("#key", ADMIN_KEY)
        tab.wait_for("Sign out")
        for width in (360, 1280):
            tab.resize(width)
            for page, ready in (("", LONG[:20]), ("/dead-letters", "webhook:")):
                tab.go(f"{url}/console{page}", ready)
                seen[f"{page or '/payments'}@{width}"] = tab.evaluate(LAYOUT)
        tab.resize(390, 844)
        for lang in ("en", "ar"):
            tab.go(f"{url}/console/payments/{payment['id']}?lang={lang}", "</main>")
            seen[lang] = {
                name: tab.evaluate(
                    f"{LEFT_OF}({_value(LABELS[lang][row])}, {a!r}, {b!r})".replace(
                        "{year}", payment["created_at"][:4]
                    )
                )
                for name, (row, a, b) in ORDER.items()
            } | tab.evaluate(TRANSITION)
        tab.close()
    return seen


async def test_console_pages_fit_a_phone_and_a_desktop_in_both_directions(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with service_with_sinks(sim, sqlite_url, EVENTS_MAX_ATTEMPTS="1") as (
        service,
        merchant,
        _seen,
    ):
        merchant.down = True  # dead letters, each with a Replay button
        await service.create("12.50", description=LONG)
        payment = await service.create(
            "9999.99", description="Annual plan", metadata={OVERRIDE: "after"}
        )
        await drained(service)
        seen = await anyio.to_thread.run_sync(lambda: _measure(service.url, payment))

    for name in ("/payments@360", "/payments@1280", "/dead-letters@360", "/dead-letters@1280"):
        layout = seen[name]
        assert layout["page"] <= 0, (name, layout)  # the page itself never scrolls sideways
        assert layout["scrolling"] == 0, (name, layout)  # nor does any card
        assert layout["codes"] > 0, (name, layout)
        assert layout["wrapped"] == 0, (name, layout)  # ids and references on one line
    for name in ("/dead-letters@360", "/dead-letters@1280"):
        assert seen[name]["buttons"] >= 4, seen[name]
        assert seen[name]["offscreen"] == 0, seen[name]
    for name in ("/payments@360", "/payments@1280"):
        assert 1 <= seen[name]["longLines"] <= 3, seen[name]  # clipped, not a column of X

    # Left-to-right values read the same in both languages; the state change's arrow points
    # from the old state to the new one in the reading direction.
    for lang in ("en", "ar"):
        assert seen[lang]["created"] is True, seen
        assert seen[lang]["amount"] is True, seen
        assert seen[lang]["sale"] is True, seen
        # The key's RIGHT-TO-LEFT OVERRIDE ends with the key: " = after" is not reversed.
        assert seen[lang]["metadata"] is (lang == "en"), seen
    assert seen["en"]["fromLeft"] is True
    assert seen["en"]["arrow"] == "→"
    assert seen["ar"]["fromLeft"] is False
    assert seen["ar"]["arrow"] == "←"
