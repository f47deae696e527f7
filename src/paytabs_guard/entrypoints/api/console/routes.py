"""The operator console's routes under ``/console`` (not in the OpenAPI document: pages).

Each page route checks the operator (``session``), fetches through the service's read use
cases (``service/queries.py``, ``service/events.py``, the breakers' snapshots and history) and
hands the data to the renderers (``pages``, ``timeline``). Bad input (a malformed date, state
or cursor) gets the page back with a 400 and a message, never a 500. Writes are POST forms
with a CSRF token, answered with a redirect (so a reload does not repeat them).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from paytabs_guard.domain import Payment, PaymentState
from paytabs_guard.entrypoints import health_checks
from paytabs_guard.entrypoints.api import problems
from paytabs_guard.entrypoints.api.auth import unauthenticated
from paytabs_guard.entrypoints.api.dependencies import RuntimeDep
from paytabs_guard.entrypoints.api.rate_limit import request_source
from paytabs_guard.entrypoints.api.runtime import Runtime
from paytabs_guard.observability import has_card_number, redact_card_numbers
from paytabs_guard.resilience.clock import utc_now
from paytabs_guard.service import events as event_cases
from paytabs_guard.service.events import EventWithDeliveries
from paytabs_guard.service.payments import PaymentNotFound, get_payment
from paytabs_guard.service.queries import search_payments

from . import chart, pages, session, timeline
from .layout import HEADERS, SIGNED_OUT_HEADERS
from .session import Operator
from .words import LANG_COOKIE, LANGUAGES, WORDS, pick_language

router = APIRouter(prefix="/console", include_in_schema=False)
_MAX_FIELD: Final = 200
_PAGE: Final = 50


class Refused(Exception):
    """No operator: a page answers with the login form, the JSON endpoint with 401; 429 while
    the address is locked out for failed sign-ins (``retry_after`` seconds)."""

    def __init__(self, retry_after: float = 0.0) -> None:
        super().__init__()
        self.retry_after = retry_after


def _now(runtime: Runtime) -> float:
    return runtime.container.payments.clock().timestamp()


async def _operator(request: Request, runtime: RuntimeDep) -> Operator:
    token = session.bearer_token(request)
    if token is not None:
        # A key sent as Bearer is a sign-in too: it counts against the address's sign-ins and
        # is refused, the right key too, while the address is locked out (as at /login).
        limiter, source = runtime.sign_in_limiter, _source(request, runtime)
        if limiter.is_blocked(source):
            raise Refused(limiter.retry_after(source))
        by_key = session.from_bearer(runtime.api_keys, token)
        if by_key is None:
            limiter.record_failure(source)
            raise Refused
        return by_key
    found = session.verify(runtime.api_keys, request.cookies.get(session.COOKIE), _now(runtime))
    if found is None:
        raise Refused
    if found.session and await runtime.container.sign_outs.signed_out(found.session):
        raise Refused  # a copy of a cookie whose session was signed out
    return found


OperatorDep = Annotated[Operator, Depends(_operator)]


def _next_path(value: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if (
        not value
        or not value.startswith("/console")
        or value.startswith("/console/log")
        or any(bad in value for bad in ("//", "\\", "\r", "\n"))
        or len(value) > 1000
    ):
        return "/console"
    return value


async def refused_page(request: Request, error: Exception) -> Response:
    """The answer to a request without an operator (the handler of ``Refused``)."""
    wait = error.retry_after if isinstance(error, Refused) else 0.0
    if request.url.path.endswith(".json"):
        problem = (
            problems.too_many_wrong_keys(wait)
            if wait
            else unauthenticated("Sign in at /console/login, or send an admin key as Bearer.")
        )
        return JSONResponse(problem.to_dict(), status_code=problem.status, headers=problem.headers,
                            media_type="application/problem+json")  # fmt: skip
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        # A form sent after the session ended (Replay, Sign out): back to the page it was on
        # after signing in, not a GET of the form's POST-only address (a 405).
        target = request.url.path.rsplit("/", 1)[0]
    next_path = _next_path(target)
    if not wait:
        return pages.login(pick_language(request), next_path=next_path)
    locked = pages.login(pick_language(request), next_path=next_path, error="too_many_sign_ins",
                         status=429)  # fmt: skip
    locked.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return locked


def _source(request: Request, runtime: Runtime) -> str:
    return request_source(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        runtime.container.settings.trusted_proxies,
    )


def _with_language(request: Request, response: Response) -> Response:
    """Remember the switch's choice (``?lang=``) for the next pages."""
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        response.set_cookie(LANG_COOKIE, str(chosen), max_age=365 * 86400, path=session.PATH,
                            httponly=True, samesite="strict",
                            secure=session.secure(request))  # fmt: skip
    return response


async def _frame(request: Request, runtime: Runtime, operator: Operator) -> pages.Frame:
    snapshots = runtime.container.gateway.breakers.snapshot()
    lag = await health_checks.outbox_lag(runtime.container)
    return pages.Frame(
        lang=pick_language(request),
        # Kept in the page's links (the language switch): never a card number sent in the
        # address, as no API answer repeats one.
        path=_no_card(request.url.path),
        query={k: _no_card(v) for k, v in request.query_params.items() if k != "lang"},
        csrf=operator.csrf,
        breakers={name: snapshot.state for name, snapshot in snapshots.items()},
        dead_letters=lag.dead_letters,
    )


def _no_card(text: str) -> str:
    """Text from the address as a page repeats it: a card number (the API's rule, which
    leaves the digits of a reference such as ``TST2634047856947`` alone) hidden."""
    return redact_card_numbers(text) if has_card_number(text) else text


class _TooManyFields(Exception):
    """A form with more fields than any console form has (one replay's ids and a few more)."""


async def _form(request: Request) -> dict[str, list[str]]:
    text = (await request.body()).decode("utf-8", "replace")
    try:
        return parse_qs(text, max_num_fields=event_cases.MAX_REPLAY_IDS + 10)
    except ValueError:  # parse_qs's "Max number of fields exceeded"
        raise _TooManyFields from None


def _first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


# ---- signing in and out ----------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request) -> Response:
    next_path = _next_path(request.query_params.get("next"))
    page = pages.login(pick_language(request), next_path=next_path, status=200)
    return _with_language(request, page)


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    try:
        form = await _form(request)
    except _TooManyFields:
        form = {}  # no key among them that a person typed: asked to sign in again
    lang = _first(form, "lang") if _first(form, "lang") in LANGUAGES else pick_language(request)
    next_path = _next_path(_first(form, "next"))
    # A form a person types into: guesses from one address are locked out for a while, the
    # right key too (unlike callbacks, whose sender may share an address with an attacker).
    source = _source(request, runtime)
    limiter = runtime.sign_in_limiter
    if limiter.is_blocked(source):
        seconds = max(1, math.ceil(limiter.retry_after(source)))
        locked = pages.login(lang, next_path=next_path, error="too_many_sign_ins", status=429)
        locked.headers["Retry-After"] = str(seconds)
        return locked
    client = runtime.api_keys.identify(_first(form, "key").strip()) if _first(form, "key") else None
    if client is None:
        limiter.record_failure(source)
        return pages.login(lang, next_path=next_path, error="key_invalid", status=401)
    cookie = session.issue(runtime.api_keys, client.id, _now(runtime))
    if cookie is None:
        limiter.record_failure(source)
        return pages.login(lang, next_path=next_path, error="key_not_admin", status=403)
    response = RedirectResponse(next_path, status_code=303, headers=HEADERS)
    session.set_cookie(response, request, cookie)
    return response


@router.api_route("/login", methods=["PUT", "PATCH", "DELETE", "OPTIONS"])
async def login_wrong_method() -> Response:
    # Two routes serve this URL; the router's own 405 names only the first one's method.
    raise problems.method_not_allowed(("GET", "POST"))


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep, operator: OperatorDep) -> Response:
    try:
        csrf = _first(await _form(request), "csrf")
    except _TooManyFields:
        csrf = ""
    if not session.csrf_ok(operator, csrf):
        # An old tab's form after signing in again elsewhere: a page that says so, in HTML.
        frame = await _frame(request, runtime, operator)
        return pages.signed_in_elsewhere(frame)
    if operator.session:
        # The browser forgets the cookie; every instance must forget the session, or a copy
        # of the cookie would open the console until it expired.
        await runtime.container.sign_outs.sign_out(
            operator.session,
            expires_at=datetime.fromtimestamp(operator.expires, tz=UTC),
            now=runtime.container.payments.clock(),
        )
    response = RedirectResponse("/console/login", status_code=303, headers=SIGNED_OUT_HEADERS)
    session.clear_cookie(response, request)
    return response


# ---- payments --------------------------------------------------------------------------------


def _day(text: str) -> datetime | None:
    if not text:
        return None
    if len(text) != 10:
        raise ValueError(text)
    return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)


async def _search(request: Request, runtime: Runtime) -> tuple[pages.Search, Any, str]:
    """The search as typed, its page of payments (None on bad input), and the error word."""
    params = request.query_params
    typed = pages.Search(
        # Shown back in the search box: a card number is no reference, and not repeated.
        reference=_no_card(params.get("q", "").strip()[:_MAX_FIELD]),
        state=params.get("state", "")[:_MAX_FIELD],
        created_from=params.get("from", "")[:_MAX_FIELD],
        created_to=params.get("to", "")[:_MAX_FIELD],
    )
    try:
        states = [PaymentState(typed.state)] if typed.state else []
    except ValueError:
        return typed, None, "bad_state"
    try:
        created_from = _day(typed.created_from)
        until = _day(typed.created_to)
    except ValueError:
        return typed, None, "bad_date"
    try:
        created_to = until + timedelta(days=1) if until else None  # the "to" day is included
    except OverflowError:  # 9999-12-31, the last day there is: no bound at all
        created_to = None
    if created_from and created_to and created_from >= created_to:
        return typed, None, "bad_range"
    found = await search_payments(
        runtime.container.payments,
        reference=typed.reference or None,
        states=states,
        created_from=created_from,
        created_to=created_to,
        after=params.get("after", "")[:_MAX_FIELD] or None,
        limit=_PAGE,
    )
    return typed, found, ""


def _payments_stamp(found: Any) -> str:
    parts = [f"{p.id}:{p.version}" for p in (found.payments if found else ())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@router.get("")
async def payments(request: Request, runtime: RuntimeDep, operator: OperatorDep) -> Response:
    frame = await _frame(request, runtime, operator)
    typed, found, error = await _search(request, runtime)
    page = pages.payments(frame, typed, found.payments if found else [],
                          found.next_after if found else None, error=error,
                          stamp=_payments_stamp(found))  # fmt: skip
    return _with_language(request, page)


async def _payment_and_events(
    runtime: Runtime, payment_id: str
) -> tuple[Payment, list[EventWithDeliveries]]:
    container = runtime.container
    found = await get_payment(container.payments, payment_id)
    events = await event_cases.payment_events(
        container.payments, health_checks.event_store(container), payment_id
    )
    return found, events


@router.get("/payments/{payment_id}")
async def payment(
    payment_id: str, request: Request, runtime: RuntimeDep, operator: OperatorDep
) -> Response:
    frame = await _frame(request, runtime, operator)
    try:
        found, events = await _payment_and_events(runtime, payment_id)
    except PaymentNotFound:
        # The id from the address as the API's 404 repeats it: a card number hidden.
        return _with_language(request, timeline.not_found(frame, _no_card(payment_id)))
    return _with_language(request, timeline.payment_page(frame, found, events))


# ---- breakers and dead letters ---------------------------------------------------------------


def _breakers_stamp(runtime: Runtime) -> str:
    # States and openings, not the probe count: probes go out every second while a breaker is
    # open, and a stamp that moved with them reloaded the page every few seconds, under the
    # operator reading it during the incident.
    snapshots = runtime.container.gateway.breakers.snapshot()
    return "|".join(f"{name}:{s.state}:{s.lifetime.opened}" for name, s in snapshots.items())


@router.get("/breakers")
async def breakers(request: Request, runtime: RuntimeDep, operator: OperatorDep) -> Response:
    frame = await _frame(request, runtime, operator)
    snapshots = runtime.container.gateway.breakers.snapshot()
    now = utc_now()  # the breakers' wall clock, which stamps their history
    rows = chart.rows(runtime.container.breaker_history, frame.breakers, now)
    page = pages.breakers(frame, snapshots, rows, now, stamp=_breakers_stamp(runtime))
    return _with_language(request, page)


@router.get("/dead-letters")
async def dead_letters(request: Request, runtime: RuntimeDep, operator: OperatorDep) -> Response:
    frame = await _frame(request, runtime, operator)
    after_text = request.query_params.get("after", "")
    replayed = request.query_params.get("replayed", "")
    words = WORDS[frame.lang]
    message = words["replayed"].format(n=int(replayed)) if _is_count(replayed) else ""
    if after_text and not _is_count(after_text):
        page = pages.dead_letters(frame, [], None, error="bad_cursor", status=400)
        return _with_language(request, page)
    found = await event_cases.list_dead_letters(
        health_checks.event_store(runtime.container), after=int(after_text) if after_text else None,
        limit=_PAGE,
    )  # fmt: skip
    page = pages.dead_letters(frame, found.letters, found.next_after, message=message)
    return _with_language(request, page)


@router.post("/dead-letters/replay")
async def replay(request: Request, runtime: RuntimeDep, operator: OperatorDep) -> Response:
    error, status, ids = "", 200, []
    try:
        form = await _form(request)
    except _TooManyFields:
        error, status = "too_many_ids", 400
    else:
        ids = sorted({int(value) for value in form.get("id", []) if _is_count(value)})
        if not session.csrf_ok(operator, _first(form, "csrf")):
            error, status = "csrf", 403
        elif len(ids) > event_cases.MAX_REPLAY_IDS:  # a page's form sends one page of them
            error, status = "too_many_ids", 400
    if error:
        frame = await _frame(request, runtime, operator)
        return pages.dead_letters(frame, [], None, error=error, status=status)
    count = 0
    if ids:
        # A page may list letters to a sink no longer configured: they are left out.
        count = await event_cases.replay_dead_letters(
            health_checks.event_store(runtime.container),
            ids=ids,
            configured=health_checks.configured_sinks(runtime.container),
            skip_unconfigured=True,
        )
        runtime.container.relay.notify()
    return RedirectResponse(f"/console/dead-letters?replayed={count}", status_code=303,
                            headers=HEADERS)  # fmt: skip


def _is_count(text: str) -> bool:
    """ASCII digits that fit a database integer: ``str.isdigit`` alone also takes "²" and
    "①", which ``int`` refuses, and any number of digits."""
    return text.isascii() and text.isdigit() and len(text) <= 18


# ---- live updates ----------------------------------------------------------------------------


@router.get("/live.json")
async def live(request: Request, runtime: RuntimeDep, operator: OperatorDep) -> Response:
    """What the page's script polls: header fields to update and the page's stamp."""
    frame = await _frame(request, runtime, operator)
    fields = {f"breaker:{name}": state for name, state in frame.breakers.items()}
    fields["dead_letters"] = str(frame.dead_letters)
    view = request.query_params.get("view", "")
    stamp = ""
    if view == "payments":
        stamp = _payments_stamp((await _search(request, runtime))[1])
    elif view == "breakers":
        stamp = _breakers_stamp(runtime)
    elif view == "dead_letters":
        stamp = str(frame.dead_letters)
    elif view == "payment":
        try:
            found, events = await _payment_and_events(runtime, request.query_params.get("id", ""))
        except PaymentNotFound:
            return JSONResponse({"fields": fields, "stamp": ""}, headers=HEADERS)
        fields["payment_state"] = found.state.value
        stamp = timeline.stamp(found, events)
    return JSONResponse({"fields": fields, "stamp": stamp}, headers=HEADERS)
