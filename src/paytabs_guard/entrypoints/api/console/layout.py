"""The console's page shell: styles, the live-update script, security headers, small helpers.

Like the return page, nothing is loaded from anywhere: styles are inline, the chart is inline
SVG, and the one script is inline too. The Content-Security-Policy allows that script by its
SHA-256 hash (it never changes), so an injected ``<script>`` would not run even if some value
escaped the escaping. Every value that reaches the HTML goes through :func:`e`, and free text
someone else wrote through :func:`t`, which also isolates it (``<bdi>``).

The script is an extra: every page is complete without it. With it, a POST form is sent once
however often its button is clicked, and the page polls a small
JSON document every few seconds, updates the header's breaker states and dead-letter count in
place (``textContent``: text, never markup), and reloads the page when what it shows changed
(or offers to, while the operator is typing in a form).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Final
from urllib.parse import quote, urlencode

from starlette.responses import HTMLResponse

from paytabs_guard.domain import Money
from paytabs_guard.entrypoints.api.html_text import escape, isolated
from paytabs_guard.entrypoints.api.return_page import SECURITY_HEADERS

from .words import WORDS

LIVE_SECONDS: Final = 3
SCRIPT: Final = (
    # A POST form is sent once: a double click sent Replay twice, the browser dropped the
    # first answer and showed the second's "Put back to pending: 0". A page shown again by
    # Back (pageshow) may send its forms again.
    "(function(){document.addEventListener('submit',function(v){var f=v.target;"
    "if(f.method!=='post')return;if(f.hasAttribute('data-sent')){v.preventDefault();return;}"
    "f.setAttribute('data-sent','');},true);window.addEventListener('pageshow',function(){"
    "document.querySelectorAll('form[data-sent]').forEach(function(f){"
    "f.removeAttribute('data-sent');});});"
    "var b=document.body,u=b.getAttribute('data-live');if(!u||!window.fetch)return;"
    "var s=b.getAttribute('data-stamp');function tick(){fetch(u,{credentials:'same-origin',"
    "headers:{Accept:'application/json'}}).then(function(r){if(r.status===401){"
    "var o=document.getElementById('signed_out');if(o)o.hidden=false;b.removeAttribute("
    "'data-live');return null;}return r.ok?r.json():null})"
    ".then(function(d){if(!d)return;var f=d.fields||{};"
    "document.querySelectorAll('[data-field]').forEach(function(el){"
    "var v=f[el.getAttribute('data-field')];if(typeof v==='string'){el.textContent=v;"
    "if(el.hasAttribute('data-state'))el.setAttribute('data-state',v);}});"
    "if(d.stamp&&s&&d.stamp!==s){var a=document.activeElement;"
    "if(a&&/INPUT|SELECT|TEXTAREA/.test(a.tagName)){var n=document.getElementById('stale');"
    "if(n)n.hidden=false;}else{location.reload();}}}).catch(function(){})"
    ".then(function(){if(b.hasAttribute('data-live'))"
    "setTimeout(tick,b.getAttribute('data-every')*1000)});}"
    "b.classList.add('js');setTimeout(tick,b.getAttribute('data-every')*1000);})();"
)
SCRIPT_HASH: Final = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; script-src 'sha256-{SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = SECURITY_HEADERS | {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
}
# Signing out empties the browser's caches of this origin, the back/forward cache included:
# Chromium kept the pages seen before signing out (a payment's timeline, its customer) and
# showed them again on Back, to whoever used the browser next, without asking the server.
SIGNED_OUT_HEADERS: Final = HEADERS | {"Clear-Site-Data": '"cache"'}
_STYLE: Final = (
    "*{box-sizing:border-box}body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',"
    "Tahoma,sans-serif;background:#f4f5f7;color:#1d2330;line-height:1.45;font-size:15px}"
    "header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;"
    "gap:.5rem 1.2rem;align-items:center}header a{color:#fff}header nav{display:flex;"
    "flex-wrap:wrap;gap:.4rem 1rem}header .me{margin-inline-start:auto;display:flex;gap:.6rem;"
    "align-items:center}header form{margin:0}main{max-width:80rem;margin:0 auto;"
    "padding:1rem}h1{font-size:1.35rem;margin:.2rem 0 .8rem;overflow-wrap:anywhere}"
    "h2{font-size:1.1rem;"
    "margin:1.4rem 0 .5rem}.card{background:#fff;border-radius:10px;padding:1rem;"
    "box-shadow:0 1px 3px #0002;margin-bottom:1rem;overflow-x:auto}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:start;padding:.35rem .5rem;"
    "border-bottom:1px solid #e3e6ec;vertical-align:top}th{font-size:.8rem;color:#5b6478;"
    "font-weight:600}code{font-size:.85em;white-space:nowrap}bdi{overflow-wrap:anywhere}"
    ".nowrap{white-space:nowrap}.clip{display:-webkit-box;-webkit-box-orient:vertical;"
    "-webkit-line-clamp:3;overflow:hidden}"
    ".pill{display:inline-block;padding:0 .5rem;border-radius:99px;background:#e3e6ec;"
    "font-size:.85rem;white-space:nowrap;color:#1d2330}"
    "[data-state=completed],[data-state=closed],[data-state=delivered],[data-state=authorized],"
    "[data-state=ok],[data-state=forced_closed]{background:#d5f2e0;color:#0a5a2c}"
    "[data-state=failed],[data-state=open],[data-state=forced_open],[data-state=dead],"
    "[data-state=conflict]{background:#fbd9dd;color:#8a0016}"
    "[data-state=half_open],[data-state=pending],[data-state=unknown],[data-state=on_hold]"
    "{background:#fdecc8;color:#6b4500}"
    "[data-state=refunded],[data-state=partially_refunded],[data-state=voided]"
    "{background:#dde7fb;color:#1b3d8a}"
    "form.search{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));"
    "gap:.6rem;align-items:end}label{display:block;font-size:.8rem;color:#5b6478}"
    "input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #b9c0cc;"
    "border-radius:6px;width:100%;background:#fff}button{background:#1d5bd8;color:#fff;"
    "border-color:#1d5bd8;cursor:pointer;width:auto;white-space:nowrap}"
    "header button{background:transparent;"
    "border-color:#fff8}.note{color:#5b6478;font-size:.85rem}.error{color:#b00020}"
    ".ok{color:#0a7a3b}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;"
    "margin:0}dt{color:#5b6478;font-size:.85rem}dd{margin:0;overflow-wrap:anywhere;min-width:0}"
    "ol.timeline{list-style:none;margin:0;padding:0}ol.timeline li{padding:.45rem 0;"
    "border-bottom:1px solid #e3e6ec}ol.timeline .at{color:#5b6478;font-size:.8rem}"
    "svg{max-width:100%;height:auto;direction:ltr}#stale,#signed_out{background:#fdecc8;"
    "padding:.4rem .8rem;border-radius:6px}.js .nojs{display:none}"
    # On a phone a table is one block per row, each cell under its column's name (data-label),
    # so nothing needs sideways scrolling; a cell that does not fit beside its label goes
    # under it. The headings stay for screen readers, off screen.
    "@media (max-width:40rem){main{padding:.6rem}.card{padding:.75rem}"
    "table,tbody,tr,td{display:block}thead{position:absolute;width:1px;height:1px;"
    "overflow:hidden;clip-path:inset(50%)}tr{padding:.35rem 0;border-bottom:1px solid #e3e6ec}"
    "td{border:0;padding:.1rem 0}td[data-label]::before{content:attr(data-label);"
    "display:inline-block;min-width:6.5rem;margin-inline-end:.5rem;color:#5b6478;"
    "font-size:.8rem}td[data-label='']::before{content:none}.wide{display:none}"
    # The chart is drawn 720 units wide and shrinks to the screen: at 360 px its 12-unit
    # labels would be 5 px tall, so a phone gets larger type in the same drawing.
    "svg text{font-size:22px}}"
)


def e(value: object) -> str:
    """Escaped text for the HTML body or a quoted attribute; bidirectional controls are shown
    as ``[U+202E]``-style markers, never obeyed (``html_text``)."""
    return escape(value)


def ltr(markup: str) -> str:
    """Left-to-right ``markup`` (already escaped) isolated from the text around it: in an
    Arabic page "2026-12-04 17:10:41 UTC" or "12.50 SAR" would otherwise be laid out right to
    left, word by word. ``dir`` on an inline element isolates it, like ``<bdi>``."""
    return f"<span dir='ltr'>{markup}</span>"


def text(value: object) -> str:
    """Text from outside (a merchant, a shopper, PayTabs, a remote server): escaped, in its
    own direction, and isolated, so bidi controls in it (U+202A-U+202E, U+2066-U+2069) end
    with it and cannot reorder what the page shows after it (they are shown as markers
    anyway: :func:`e`)."""
    return isolated(value)


def clipped(value: object) -> str:
    """Outside text in a list: at most three lines (the whole of it in the tooltip and on the
    item's own page), so one long description cannot take over the table."""
    return f"<bdi class='clip' title='{e(value)}'>{e(value)}</bdi>"


def ref(value: object) -> str:
    """An identifier or reference: monospace, left to right, isolated, never wrapped."""
    return f"<code dir='ltr'>{e(value)}</code>"


def money(amount: Money) -> str:
    return f"<span class='nowrap' dir='ltr'>{e(amount.format())} {e(amount.currency)}</span>"


def when(value: datetime | None) -> str:
    """The time as text (for tooltips and attributes); :func:`moment` for the page."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def moment(value: datetime | None) -> str:
    """A time on the page, left to right in both languages. In a narrow column it may break
    between the date and the time, never inside either (nor before "UTC")."""
    if value is None:
        return ""
    day, clock = value.strftime("%Y-%m-%d"), value.strftime("%H:%M:%S")
    return f"<span dir='ltr'><span class='nowrap'>{day}</span> {clock}&nbsp;UTC</span>"


def pill(state: str, field: str | None = None) -> str:
    live = f" data-field='{e(field)}'" if field else ""
    return f"<span class='pill' data-state='{e(state)}'{live}>{e(state)}</span>"


def payment_url(payment_id: str) -> str:
    return f"/console/payments/{quote(payment_id, safe='')}"


def with_query(path: str, params: Mapping[str, str]) -> str:
    kept = {key: value for key, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def table(
    headings: Iterable[str], rows: Iterable[Iterable[str]], *, wide: Collection[int] = ()
) -> str:
    """A table of already-escaped cells (headings are escaped here); the ``wide`` columns are
    left out on a phone-sized screen, where each row is a block of labelled cells."""

    def cls(index: int) -> str:
        return " class='wide'" if index in wide else ""

    names = [e(h) for h in headings]
    head = "".join(f"<th{cls(i)}>{name}</th>" for i, name in enumerate(names))
    body = "".join(
        "<tr>"
        + "".join(f"<td{cls(i)} data-label='{names[i]}'>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(
    lang: str,
    title: str,
    content: str,
    *,
    header: str = "",
    live: str = "",
    stamp: str = "",
    status: int = 200,
) -> HTMLResponse:
    """A whole console page. ``live`` is the JSON URL to poll (none: a static page)."""
    words = WORDS[lang]
    live_attrs = (
        f" data-live='{e(live)}' data-stamp='{e(stamp)}' data-every='{LIVE_SECONDS}'"
        if live
        else ""
    )
    body = (
        f"<!doctype html><html lang='{lang}' dir='{'rtl' if lang == 'ar' else 'ltr'}'><head>"
        "<meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(title)} · {e(words['console'])}</title><style>{_STYLE}</style></head>"
        f"<body{live_attrs}>{header}<main>"
        f"<p id='stale' hidden>{e(words['stale'])}</p>"
        f"<p id='signed_out' class='stale' role='alert' hidden>{e(words['signed_out'])}</p>"
        f"<h1>{e(title)}</h1>{content}</main>"
        f"<script>{SCRIPT}</script></body></html>"
    )
    headers = HEADERS | {"Content-Language": lang}
    return HTMLResponse(body, status_code=status, headers=headers)
