"""The console's pages other than a payment's timeline: header, login, payment search,
breakers and dead letters. Functions of already-fetched data to HTML; the routes fetch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.responses import HTMLResponse

from paytabs_guard.domain import Payment, PaymentState
from paytabs_guard.resilience import BreakerSnapshot
from paytabs_guard.service.events import DeadLetterEntry

from . import chart
from .layout import (
    clipped,
    e,
    ltr,
    moment,
    money,
    page,
    payment_url,
    pill,
    ref,
    table,
    text,
    with_query,
)
from .words import WORDS


@dataclass(frozen=True, slots=True)
class Frame:
    """What every signed-in page shows around its content."""

    lang: str
    path: str
    query: Mapping[str, str]
    csrf: str
    breakers: Mapping[str, str]  # name -> state
    dead_letters: int


def payment_link(payment_id: str) -> str:
    return f"<a href='{e(payment_url(payment_id))}'>{ref(payment_id)}</a>"


def _csrf_field(csrf: str) -> str:
    return f"<input type='hidden' name='csrf' value='{e(csrf)}'>"


def header(frame: Frame) -> str:
    words = WORDS[frame.lang]
    other = "en" if frame.lang == "ar" else "ar"
    switch = with_query(frame.path, {**frame.query, "lang": other})
    pills = " ".join(
        f"<span>{e(name)} {pill(state, f'breaker:{name}')}</span>"
        for name, state in frame.breakers.items()
    )
    return (
        "<header><strong>paytabs-guard</strong><nav>"
        f"<a href='/console'>{e(words['payments'])}</a>"
        f"<a href='/console/breakers'>{e(words['breakers'])}</a> {pills}"
        f"<a href='/console/dead-letters'>{e(words['dead_letters'])}</a> "
        f"<span class='pill' data-field='dead_letters'>{frame.dead_letters}</span></nav>"
        f"<span class='me'><a href='{e(switch)}' lang='{other}'>{e(words['language'])}</a>"
        f"<form method='post' action='/console/logout'>{_csrf_field(frame.csrf)}"
        f"<button type='submit'>{e(words['sign_out'])}</button></form></span></header>"
    )


def login(lang: str, *, next_path: str, error: str = "", status: int = 401) -> HTMLResponse:
    words = WORDS[lang]
    problem = f"<p class='error' role='alert'>{e(words[error])}</p>" if error else ""
    content = (
        f"<div class='card'><p>{e(words['login_needed'])}</p>{problem}"
        "<form method='post' action='/console/login'>"
        f"<input type='hidden' name='next' value='{e(next_path)}'>"
        f"<input type='hidden' name='lang' value='{e(lang)}'>"
        f"<label for='key'>{e(words['admin_key'])}</label>"
        "<input id='key' name='key' type='password' autocomplete='current-password' required>"
        f"<p class='note'>{e(words['login_hint'])}</p>"
        f"<button type='submit'>{e(words['sign_in'])}</button></form></div>"
    )
    # The language switch before signing in too: the only other way was typing ?lang= by hand.
    other = "en" if lang == "ar" else "ar"
    switch = with_query("/console/login", {"next": next_path, "lang": other})
    top = (
        "<header><strong>paytabs-guard</strong><span class='me'>"
        f"<a href='{e(switch)}' lang='{other}'>{e(words['language'])}</a></span></header>"
    )
    return page(lang, words["sign_in"], content, status=status, header=top)


@dataclass(frozen=True, slots=True)
class Search:
    """The search form's values as typed (shown back to the operator)."""

    reference: str = ""
    state: str = ""
    created_from: str = ""
    created_to: str = ""

    def params(self) -> dict[str, str]:
        return {"q": self.reference, "state": self.state, "from": self.created_from,
                "to": self.created_to}  # fmt: skip


def _search_form(lang: str, search: Search) -> str:
    words = WORDS[lang]
    options = f"<option value=''>{e(words['any_state'])}</option>" + "".join(
        f"<option value='{e(s.value)}'{' selected' if s.value == search.state else ''}>"
        f"{e(s.value)}</option>"
        for s in PaymentState
    )
    return (
        "<form class='search card' method='get' action='/console'>"
        f"<div><label for='q'>{e(words['reference'])}</label>"
        f"<input id='q' name='q' value='{e(search.reference)}' maxlength='200'></div>"
        f"<div><label for='state'>{e(words['state'])}</label>"
        f"<select id='state' name='state'>{options}</select></div>"
        f"<div><label for='from'>{e(words['from'])}</label><input id='from' name='from' "
        f"type='date' value='{e(search.created_from)}'></div>"
        f"<div><label for='to'>{e(words['to'])}</label><input id='to' name='to' type='date' "
        f"value='{e(search.created_to)}'></div>"
        f"<div><button type='submit'>{e(words['search'])}</button></div></form>"
    )


def payments(
    frame: Frame,
    search: Search,
    found: Sequence[Payment],
    next_after: str | None,
    *,
    error: str = "",
    stamp: str = "",
) -> HTMLResponse:
    words = WORDS[frame.lang]
    rows = [
        (
            payment_link(p.id),
            moment(p.created_at),
            pill(p.state.value),
            money(p.amount),
            clipped(p.description),
            ref(p.cart_id),
            ref(p.tran_ref or ""),
        )
        for p in found
    ]
    headings = (words["id"], words["created"], words["state"], words["amount"],
                words["description"], words["cart_id"], words["tran_ref"])  # fmt: skip
    listing = table(headings, rows, wide=(5, 6)) if rows else f"<p>{e(words['no_payments'])}</p>"
    more = ""
    if next_after:
        older = with_query("/console", {**search.params(), "after": next_after})
        more = f"<p><a href='{e(older)}'>{e(words['older'])} {e(words['onward'])}</a></p>"
    problem = f"<p class='error' role='alert'>{e(words[error])}</p>" if error else ""
    content = f"{_search_form(frame.lang, search)}{problem}<div class='card'>{listing}{more}</div>"
    # The poll asks about this very page: an older page's stamp compared with the first
    # page's never matched, and the page reloaded itself every few seconds.
    after = frame.query.get("after", "")
    live = with_query("/console/live.json", {**search.params(), "after": after, "view": "payments"})
    return page(frame.lang, words["payments"], content, header=header(frame), live=live,
                stamp=stamp, status=400 if error else 200)  # fmt: skip


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _iso_moment(value: str | None) -> str:
    """A snapshot's ISO 8601 time shown like every other time on the console."""
    if not value:
        return ""
    try:
        return moment(datetime.fromisoformat(value).astimezone(UTC))
    except ValueError:  # not ours to judge: shown as it came
        return ltr(e(value))


def _breaker_card(lang: str, snapshot: BreakerSnapshot) -> str:
    words = WORDS[lang]
    window, probes = snapshot.window, snapshot.probes
    stats = (
        f"<dt>{e(words['since'])}</dt><dd>{_iso_moment(snapshot.since)}</dd>"
        # "calls 1", not "1 calls": a name then its count, like the probes' line, needs no
        # plural forms (Arabic has six).
        f"<dt>{e(words['window'])}</dt><dd>{e(words['calls'])} {window.calls} · "
        f"{e(words['failures'])} {window.failures} · {e(words['error_rate'])} "
        f"{ltr(f'{window.error_rate:.0f}%')}</dd>"
        f"<dt>{e(words['latency'])}</dt><dd>{_seconds(window.latency_p50)} / "
        f"{_seconds(window.latency_p95)}</dd>"
        f"<dt>{e(words['opened'])}</dt><dd>{snapshot.lifetime.opened}</dd>"
    )
    if probes.interval is None:
        probe_text = e(words["off"])
    else:
        probe_text = (
            f"{e(words['interval'])} {probes.interval:g} s · {e(words['sent'])} {probes.sent} · "
            f"{e(words['succeeded'])} {probes.succeeded} · {e(words['failed'])} {probes.failed}"
        )
        if probes.last_result:
            probe_text += (
                f" · {e(words['last_probe'])} {pill(probes.last_result)} "
                f"{_iso_moment(probes.last_at)}"
            )
        if probes.next_probe_in is not None:
            probe_text += f" · {e(words['next_probe'])} {probes.next_probe_in:.1f} s"
    return (
        f"<div class='card'><h2>{e(snapshot.name)} "
        f"{pill(snapshot.state, f'breaker:{snapshot.name}')}</h2><dl>{stats}"
        f"<dt>{e(words['probes'])}</dt><dd>{probe_text}</dd></dl></div>"
    )


def breakers(
    frame: Frame,
    snapshots: Mapping[str, BreakerSnapshot],
    rows: Sequence[chart.Row],
    now: datetime,
    stamp: str,
) -> HTMLResponse:
    words = WORDS[frame.lang]
    drawing = chart.svg(rows, now, words)
    content = (
        f"<div class='card'><h2>{e(words['chart_title'])}</h2>{drawing}"
        f"<p class='note'>{e(words['history_note'])}</p></div>"
        + "".join(_breaker_card(frame.lang, snapshot) for snapshot in snapshots.values())
    )
    return page(frame.lang, words["breakers"], content, header=header(frame),
                live="/console/live.json?view=breakers", stamp=stamp)  # fmt: skip


def signed_in_elsewhere(frame: Frame) -> HTMLResponse:
    """403 for a form whose token is no longer the session's (an old tab, after signing in
    again elsewhere): the page says so, with a way on."""
    words = WORDS[frame.lang]
    content = (
        f"<div class='card'><p class='error' role='alert'>{e(words['csrf'])}</p>"
        f"<p><a href='/console'>{e(words['payments'])}</a></p></div>"
    )
    return page(frame.lang, words["payments"], content, header=header(frame), status=403)


def _replay_form(csrf: str, label: str, delivery_ids: Sequence[int], named: str = "") -> str:
    """A POST form that puts ``delivery_ids`` back to pending. The handler replays exactly the
    ids it is sent (never "everything dead"), so "all on this page" lists the page's ids:
    a letter that died after the page was drawn is not replayed unseen. ``named``: the
    button's accessible name, when its label alone does not say which letter it replays."""
    targets = "".join(f"<input type='hidden' name='id' value='{i}'>" for i in delivery_ids)
    aria = f" aria-label='{e(named)}'" if named else ""
    return (
        f"<form method='post' action='/console/dead-letters/replay'>{_csrf_field(csrf)}{targets}"
        f"<button type='submit'{aria}>{e(label)}</button></form>"
    )


def dead_letters(
    frame: Frame,
    letters: Sequence[DeadLetterEntry],
    next_after: int | None,
    *,
    message: str = "",
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    words = WORDS[frame.lang]
    rows = [
        (
            str(letter.delivery.id),
            e(letter.event_type),
            payment_link(letter.payment_id),
            e(letter.delivery.sink),
            str(letter.delivery.attempts),
            text(letter.delivery.last_error or ""),
            moment(letter.delivery.dead_at),
            _replay_form(
                frame.csrf,
                words["replay"],
                [letter.delivery.id],
                f"{words['replay']} {letter.delivery.id} ({letter.event_type}, "
                f"{letter.delivery.sink})",
            ),
        )
        for letter in letters
    ]
    headings = (words["id"], words["type"], words["payment"], words["sink"], words["attempts"],
                words["last_error"], words["dead_at"], "")  # fmt: skip
    notice = f"<p class='ok' role='status'>{e(message)}</p>" if message else ""
    if error:
        notice += f"<p class='error' role='alert'>{e(words[error])}</p>"
    if rows:
        # The last error is what an operator needs to decide on a replay: shown on a phone too.
        listing = table(headings, rows, wide=(0,))
        listing += _replay_form(
            frame.csrf, words["replay_all"], [letter.delivery.id for letter in letters]
        )
    else:
        listing = f"<p>{e(words['no_dead_letters'])}</p>"
    if next_after is not None:
        listing += f"<p><a href='/console/dead-letters?after={next_after}'>{e(words['later'])}"
        listing += f" {e(words['onward'])}</a></p>"
    content = f"{notice}<div class='card'>{listing}</div>"
    return page(frame.lang, words["dead_letters"], content, header=header(frame),
                live="/console/live.json?view=dead_letters", stamp=str(frame.dead_letters),
                status=status)  # fmt: skip
