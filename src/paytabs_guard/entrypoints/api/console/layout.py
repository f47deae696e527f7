"""The console's page shell: styles, the live-update script, security headers, small helpers.

Like the return page, nothing is loaded from anywhere: styles are inline, the chart is inline
SVG, and the one script is inline too. The Content-Security-Policy allows that script by its
SHA-256 hash (it never changes), so an injected ``<script>`` would not run even if some value
escaped the escaping. Every value that reaches the HTML goes through :func:`e`, and free text
someone else wrote through :func:`t`, which also isolates it (``<bdi>``).

The script is an extra: every page is complete without it. With it, the page polls a small
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
    "(function(){var b=document.body,u=b.getAttribute('data-live');if(!u||!window.fetch)return;"
    "var s=b.getAttribute('data-stamp');function tick(){fetch(u,{credentials:'same-origin',"
    "headers:{Accept:'application/json'}}).then(function(r){return r.ok?r.json():null})"
    ".then(function(d){if(!d)return;var f=d.fields||{};"
    "document.querySelectorAll('[data-field]').forEach(function(el){"
    "var v=f[el.getAttribute('data-field')];if(typeof v==='string'){el.textContent=v;"
    "if(el.hasAttribute('data-state'))el.setAttribute('data-state',v);}});"
    "if(d.stamp&&s&&d.stamp!==s){var a=document.activeElement;"
    "if(a&&/INPUT|SELECT|TEXTAREA/.test(a.tagName)){var n=document.getElementById('stale');"
    "if(n)n.hidden=false;}else{location.reload();}}}).catch(function(){})"
    ".then(function(){setTimeout(tick,b.getAttribute('data-every')*1000)});}"
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
_STYLE: Final = (
    "*{box-sizing:border-box}body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',"
    "Tahoma,sans-serif;background:#f4f5f7;color:#1d2330;line-height:1.45;font-size:15px}"
    "header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;"
    "gap:.5rem 1.2rem;align-items:center}header a{color:#fff}header nav{display:flex;"
    "flex-wrap:wrap;gap:.4rem 1rem}header .me{margin-inline-start:auto;display:flex;gap:.6rem;"
    "align-items:center}header form{margin:0}main{max-width:72rem;margin:0 auto;"
    "padding:1rem}h1{font-size:1.35rem;margin:.2rem 0 .8rem;overflow-wrap:anywhere}"
    "h2{font-size:1.1rem;"
    "margin:1.4rem 0 .5rem}.card{background:#fff;border-radius:10px;padding:1rem;"
    "box-shadow:0 1px 3px #0002;margin-bottom:1rem;overflow-x:auto}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:start;padding:.35rem .5rem;"
    "border-bottom:1px solid #e3e6ec;vertical-align:top}th{font-size:.8rem;color:#5b6478;"
    "font-weight:600}code{font-size:.85em;overflow-wrap:anywhere}"
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
    "margin:0}dt{color:#5b6478;font-size:.85rem}dd{margin:0;word-break:break-all}"
    "ol.timeline{list-style:none;margin:0;padding:0}ol.timeline li{padding:.45rem 0;"
    "border-bottom:1px solid #e3e6ec}ol.timeline time{color:#5b6478;font-size:.8rem;"
    "display:block}svg{max-width:100%;height:auto;direction:ltr}#stale{background:#fdecc8;"
    "padding:.4rem .8rem;border-radius:6px}.js .nojs{display:none}"
    "@media (max-width:40rem){main{padding:.6rem}th,td{padding:.3rem}"
    ".wide{display:none}}"
)


def e(value: object) -> str:
    """Escaped text for the HTML body or a quoted attribute; bidirectional controls are shown
    as ``[U+202E]``-style markers, never obeyed (``html_text``)."""
    return escape(value)


def t(value: object) -> str:
    """Free text from a merchant or PayTabs (a description, metadata, a response message, a
    reason quoting one): escaped like :func:`e` and isolated in ``<bdi>`` from what is around it."""
    return isolated(value)


def money(amount: Money) -> str:
    return f"{e(amount.format())} {e(amount.currency)}"


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


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
    left out on a phone-sized screen."""

    def cls(index: int) -> str:
        return " class='wide'" if index in wide else ""

    head = "".join(f"<th{cls(i)}>{e(h)}</th>" for i, h in enumerate(headings))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
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
        f"<p id='stale' hidden>{e(words['stale'])}</p><h1>{e(title)}</h1>{content}</main>"
        f"<script>{SCRIPT}</script></body></html>"
    )
    headers = HEADERS | {"Content-Language": lang}
    return HTMLResponse(body, status_code=status, headers=headers)
