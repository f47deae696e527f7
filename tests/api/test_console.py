"""The operator console over real HTTP: signing in, CSRF, search, escaping, the timeline,
breakers, dead letters and Arabic, against the service and the simulator (SQLite and, where
the query runs on the database, PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from paytabs_guard.entrypoints import health_checks
from paytabs_guard.entrypoints.api.console.layout import SCRIPT
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator

from .api_support import ADMIN_KEY, API_KEY, DECLINED, Service, running_service
from .console_support import csrf_of, form_fields, signed_in
from .relay_support import drained
from .test_events_api import service_with_sinks, webhook_sink
from .test_saved_cards import charge, save_card

pytestmark = pytest.mark.anyio
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


async def test_without_an_admin_key_pages_ask_to_sign_in_and_json_says_401(
    service: Service,
) -> None:
    page = await service.anonymous.get("/console/breakers?x=1")
    assert page.status_code == 401
    assert "name='key'" in page.text
    assert "type='password'" in page.text
    assert "value='/console/breakers?x=1'" in page.text  # back there after signing in
    live = await service.anonymous.get("/console/live.json")
    assert live.status_code == 401
    assert live.headers["content-type"] == "application/problem+json"

    wrong = await service.anonymous.post("/console/login", data={"key": "not-a-key"})
    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    assert "set-cookie" not in wrong.headers
    merchant = await service.anonymous.post("/console/login", data={"key": API_KEY})
    assert merchant.status_code == 403
    assert "ADMIN_API_KEYS" in merchant.text
    assert "set-cookie" not in merchant.headers
    # A merchant key as Bearer does not open the console either.
    bearer = await service.anonymous.get("/console", headers={"Authorization": f"Bearer {API_KEY}"})
    assert bearer.status_code == 401
    assert (await service.admin.get("/console")).status_code == 200  # an admin Bearer does
    # Two Authorization headers open nothing, whichever of them is the admin key.
    admin = f"Bearer {ADMIN_KEY}"
    for pair in ((admin, f"Bearer {API_KEY}"), (f"Bearer {API_KEY}", admin)):
        both = await service.anonymous.get(
            "/console", headers=[("Authorization", pair[0]), ("Authorization", pair[1])]
        )
        assert both.status_code == 401

    elsewhere = await service.anonymous.post(
        "/console/login", data={"key": "admin-key-0123456789abc", "next": "//evil.example/x"}
    )
    assert elsewhere.status_code == 303
    assert elsewhere.headers["location"] == "/console"  # never sent to another site
    cookie = elsewhere.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https gets Secure
    assert "admin-key" not in cookie  # the key itself never leaves the form

    async with signed_in(service) as browser:
        assert (await browser.get("/console")).status_code == 200
        value = browser.cookies["pg_console"]
        forged = value[:-1] + ("0" if value[-1] != "0" else "1")
        browser.cookies.set("pg_console", forged, path="/console")
        assert (await browser.get("/console")).status_code == 401


async def test_replaying_dead_letters_needs_the_sessions_csrf_token(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with service_with_sinks(sim, sqlite_url, EVENTS_MAX_ATTEMPTS="1") as (
        service,
        merchant,
        _seen,
    ):
        merchant.down = True
        payment = await service.create()
        await drained(service)
        async with signed_in(service) as browser:
            page = await browser.get("/console/dead-letters")
            assert page.status_code == 200
            assert payment["id"] in page.text
            assert webhook_sink(service) in page.text
            ids = re.findall(r"name='id' value='(\d+)'", page.text)
            assert ids
            for token in ("", "0" * 32):
                refused = await browser.post(
                    "/console/dead-letters/replay", data={"id": ids[0], "csrf": token}
                )
                assert refused.status_code == 403
            assert (await health_checks.outbox_lag(service.container)).dead_letters == len(set(ids))
            logout = await browser.post("/console/logout", data={"csrf": ""})
            assert logout.status_code == 403
            # A page, not a bare sentence: an old tab's Sign out after signing in elsewhere.
            assert logout.headers["content-type"].startswith("text/html")
            assert "The form expired" in logout.text
            assert "href='/console'" in logout.text

            merchant.down = False
            done = await browser.post(
                "/console/dead-letters/replay", data={"id": ids[0], "csrf": csrf_of(page.text)}
            )
            assert done.status_code == 303
            assert done.headers["location"] == "/console/dead-letters?replayed=1"
            await drained(service)
            assert (await health_checks.outbox_lag(service.container)).dead_letters == len(
                set(ids)
            ) - 1
            after = await browser.get(done.headers["location"])
            assert "Put back to pending: 1" in after.text


async def test_replay_all_puts_back_every_dead_letter_on_the_page(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with service_with_sinks(sim, sqlite_url, EVENTS_MAX_ATTEMPTS="1") as (
        service,
        merchant,
        _seen,
    ):
        merchant.down = True
        for _ in range(3):
            await service.create()
        await drained(service)
        dead = (await health_checks.outbox_lag(service.container)).dead_letters
        assert dead >= 3
        async with signed_in(service) as browser:
            page = await browser.get("/console/dead-letters")
            fields = form_fields(page.text, "Replay all on this page")
            # The button's form names every letter the page lists, with the CSRF token.
            listed = set(re.findall(r"<tr><td[^>]*>(\d+)</td>", page.text))  # id column
            assert len(listed) == dead
            assert set(fields["id"]) == listed
            assert fields["csrf"] == [csrf_of(page.text)]
            # Each row's button says which letter it replays (50 "Replay" buttons said nothing).
            named = re.findall(r"<button type='submit' aria-label='Replay (\d+) \(", page.text)
            assert set(named) == listed

            merchant.down = False
            done = await browser.post("/console/dead-letters/replay", data=fields)
            assert done.status_code == 303
            assert done.headers["location"] == f"/console/dead-letters?replayed={dead}"
            assert (await health_checks.outbox_lag(service.container)).dead_letters == 0
            after = await browser.get(done.headers["location"])
            assert f"Put back to pending: {dead}." in after.text
            await drained(service)
            assert (await health_checks.outbox_lag(service.container)).dead_letters == 0
            assert "No dead letter" in (await browser.get("/console/dead-letters")).text


async def test_search_by_reference_state_and_date(any_service: Service) -> None:
    service = any_service
    paid = await service.create("12.50", description="Paid one")
    await service.pay(paid)
    declined = await service.create("7.00", description="Declined one")
    await service.pay(declined, DECLINED)
    waiting = await service.create("3.00", description="Waiting one")
    await service.callbacks_done()
    paid = await service.get(paid["id"])
    assert paid["state"] == "completed"
    async with signed_in(service) as browser:

        async def shown(**params: str) -> set[str]:
            page = await browser.get("/console", params=params)
            assert page.status_code == 200, page.text
            ids = (paid["id"], declined["id"], waiting["id"])
            return {p for p in ids if f"href='/console/payments/{p}'" in page.text}

        everything = {paid["id"], declined["id"], waiting["id"]}
        assert await shown() == everything
        assert await shown(q=paid["id"]) == {paid["id"]}
        assert await shown(q=paid["cart_id"]) == {paid["id"]}
        assert await shown(q=paid["tran_ref"]) == {paid["id"]}
        assert await shown(q="no-such-reference") == set()
        assert await shown(state="failed") == {declined["id"]}
        assert await shown(q=paid["id"], state="failed") == set()
        today = datetime.now(UTC).date()
        assert await shown(**{"from": today.isoformat(), "to": today.isoformat()}) == everything
        yesterday = (today - timedelta(days=1)).isoformat()
        assert await shown(to=yesterday) == set()
        assert await shown(**{"from": (today + timedelta(days=1)).isoformat()}) == set()
        # 9999-12-31 as "to", the last day there is (its next day does not exist: once a 500,
        # then a "Dates are YYYY-MM-DD" that was untrue): no upper bound
        assert await shown(to="9999-12-31") == everything
        bad_input = ({"from": "12/01/2026"}, {"to": "2026-13-40"}, {"state": "nonsense"})
        for bad in bad_input:
            answer = await browser.get("/console", params=bad)
            assert answer.status_code == 400
            assert "role='alert'" in answer.text


async def test_hostile_payment_data_is_shown_as_text(service: Service) -> None:
    payment = await service.create(description=HOSTILE[:128], metadata={"name": HOSTILE})
    async with signed_in(service) as browser:
        for url, params in (
            ("/console", {"q": HOSTILE}),
            ("/console", {}),
            (f"/console/payments/{payment['id']}", {}),
            ("/console/payments/" + "%3Cscript%3Ex", {}),
        ):
            page = await browser.get(url, params=params)
            assert page.status_code in (200, 404), page.text
            assert "<script>alert" not in page.text
            assert "<img" not in page.text
            assert "onerror=alert(2)>" not in page.text.replace("&gt;", "")  # never raw markup
            # The only script is ours, and the policy names exactly it.
            assert page.text.count("<script>") == 1
            digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
            policy = page.headers["content-security-policy"]
            assert f"script-src 'sha256-{digest}'" in policy
            assert "default-src 'none'" in policy
        timeline = await browser.get(f"/console/payments/{payment['id']}")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in timeline.text


BIDI = "".join(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


async def test_bidi_controls_are_shown_not_obeyed_and_free_text_is_isolated(
    service: Service,
) -> None:
    description = f"Refund \u202e05.21 RAS {BIDI}"
    payment = await service.create(description=description, metadata={"note": "\u2067x"})
    async with signed_in(service) as browser:
        for url in ("/console", f"/console/payments/{payment['id']}"):
            page = (await browser.get(url)).text
            assert not any(control in page for control in BIDI), url
            # isolated: the list's <bdi> carries its clipping class and tooltip
            assert re.search(r"<bdi[^>]*>Refund \[U\+202E\]05\.21 RAS \[U\+202A\]", page), url
        timeline = (await browser.get(f"/console/payments/{payment['id']}")).text
        assert "<bdi>note</bdi> = <bdi>[U+2067]x</bdi>" in timeline
        # The search box shows what was typed, as text in an attribute: markers there too.
        searched = (await browser.get("/console", params={"q": "\u202eabc"})).text
        assert "value='[U+202E]abc'" in searched


async def test_a_payments_timeline_tells_its_story(service: Service) -> None:
    payment = await service.create("100.00")
    await service.pay(payment)
    await service.callbacks_done()
    refund = await service.admin.post(
        f"/payments/v2/{payment['id']}/refund",
        json={"amount": "40.00"},
        headers={"Idempotency-Key": "refund-key-0001"},
    )
    assert refund.status_code in (200, 202), refund.text
    paid = await service.get(payment["id"])
    async with signed_in(service) as browser:
        page = await browser.get(f"/console/payments/{payment['id']}")
        assert page.status_code == 200
        text = page.text
        for expected in (
            "partially_refunded",  # the state now
            "awaiting_customer",  # a state it went through
            paid["tran_ref"],
            "callback",  # how the sale was decided
            "40.00",  # the refund
            "payment.refunded",  # an event
        ):
            assert expected in text, expected
        sections = ("Timeline", "Gateway transactions", "Callbacks and returns received",
                    "Refunds", "Events and deliveries")  # fmt: skip
        positions = [text.index(f"<h2>{title}</h2>") for title in sections]
        assert positions == sorted(positions)
        live = await browser.get(
            "/console/live.json", params={"view": "payment", "id": payment["id"]}
        )
        assert live.json()["fields"]["payment_state"] == "partially_refunded"
        missing = await browser.get("/console/payments/pay_does_not_exist")
        assert missing.status_code == 404


async def test_a_recurring_charge_shows_its_saved_card_and_is_not_called_undecided(
    service: Service,
) -> None:
    # A recurring charge is decided by PayTabs' direct answer, not by a callback: the page must
    # not say that nothing from PayTabs decided it, and it names the card it charged.
    saving = await save_card(service)
    card_id = saving["saved_card_id"]
    charged = await charge(service, card_id)
    assert charged.status_code == 201, charged.text
    async with signed_in(service) as browser:
        for payment_id in (charged.json()["id"], saving["id"]):
            page = (await browser.get(f"/console/payments/{payment_id}")).text
            assert "Saved card" in page
            assert card_id in page
        renewal = (await browser.get(f"/console/payments/{charged.json()['id']}")).text
        assert "completed" in renewal
        assert "Nothing from PayTabs decided this payment" not in renewal


async def test_a_recurring_charge_s_timeline_speaks_of_the_charge_not_a_page(
    service: Service,
) -> None:
    # A renewal has no hosted page: its timeline said "create-page request about to be sent"
    # and, when PayTabs' answer was lost, "no answer to the create-page request".
    saving = await save_card(service)
    faults = Faults(error_rate=1.0, error_statuses=[502], error_phase="after",
                    fault_paths=["/payment/request", "/payment/query"])  # fmt: skip
    service.sim.engine.set_faults(faults)
    lost = await charge(service, saving["saved_card_id"])
    service.sim.engine.set_faults(Faults())
    assert lost.status_code == 202, lost.text
    async with signed_in(service) as browser:
        page = (await browser.get(f"/console/payments/{lost.json()['id']}")).text
    assert "create-page" not in page
    assert "recurring charge about to be sent" in page
    assert re.search(r"no answer to the recurring charge\. PayTabs: token, [\d,]+ ms", page), page


async def test_breakers_show_their_last_hour_and_probes(service: Service) -> None:
    forced = await service.admin.post("/payments/v2/circuit-breaker/create/open")
    assert forced.status_code == 200
    async with signed_in(service) as browser:
        page = await browser.get("/console/breakers")
        assert page.status_code == 200
        assert "<svg" in page.text
        assert "data-state='forced_open'" in page.text  # a band of the chart
        assert "data-state='closed'" in page.text  # it was closed before
        assert "Recovery probes" in page.text
        # Times as everywhere else on the console, counts without plurals to get wrong.
        assert re.search(r"\d{4}-\d\d-\d\d</span> \d\d:\d\d:\d\d&nbsp;UTC", page.text)
        assert "+00:00" not in page.text
        assert re.search(r"calls \d+ · failures \d+ · error rate", page.text)
        # The history began with this service, seconds ago: nothing drawn for the hour before
        # (an hour is 600 units wide and ends at 720).
        starts = [float(x) for x in re.findall(r"<rect x='([\d.]+)'", page.text)]
        assert starts
        assert min(starts) > 700
        live = (await browser.get("/console/live.json", params={"view": "breakers"})).json()
        assert live["fields"]["breaker:create"] == "forced_open"
    await service.admin.post("/payments/v2/circuit-breaker/create/reset")


async def test_an_answered_probe_is_green_and_a_failed_one_red(service: Service) -> None:
    breaker = service.container.gateway.breakers.get("create")
    breaker.record_probe(succeeded=False, latency=0.05)
    breaker.record_probe(succeeded=True, latency=0.05)
    async with signed_in(service) as browser:
        page = (await browser.get("/console/breakers")).text
    dots = re.findall(r"<circle [^>]*stroke='(#[0-9a-f]{6})'[^>]*><title>probe (\w+) ", page)
    assert sorted(dots) == [("#0a5a2c", "succeeded"), ("#8a0016", "failed")]


async def test_the_breakers_page_reloads_on_a_state_change_not_on_every_probe(
    service: Service,
) -> None:
    # Probes go out every second while a breaker is open; a page whose stamp moved with them
    # reloaded itself every few seconds under the operator reading it.
    breaker = service.container.gateway.breakers.get("create")
    async with signed_in(service) as browser:

        async def stamp() -> str:
            live = await browser.get("/console/live.json", params={"view": "breakers"})
            value: str = live.json()["stamp"]
            return value

        before = await stamp()
        breaker.record_probe(succeeded=False, latency=0.05)
        breaker.record_probe(succeeded=True, latency=0.05)
        assert await stamp() == before
        breaker.force_open()
        assert await stamp() != before  # a change of state still reloads it
    breaker.reset()


async def test_arabic_from_accept_language_and_from_the_switch(service: Service) -> None:
    async with signed_in(service, **{"Accept-Language": "ar-SA,ar;q=0.9"}) as browser:
        page = await browser.get("/console")
        assert "<html lang='ar' dir='rtl'>" in page.text
        assert "المدفوعات" in page.text
        assert page.headers["content-language"] == "ar"
        switched = await browser.get("/console", params={"lang": "en"})
        assert "<html lang='en' dir='ltr'>" in switched.text
        # The switch is remembered over the browser's preference.
        again = await browser.get("/console/breakers")
        assert "<html lang='en' dir='ltr'>" in again.text
    login = await service.anonymous.get("/console/login", headers={"Accept-Language": "ar"})
    assert "dir='rtl'" in login.text
    assert "تسجيل الدخول" in login.text
    # A switch before signing in too, keeping where the operator was going.
    switch = re.search(r"<a href='(/console/login\?[^']+)' lang='en'>", login.text)
    assert switch is not None
    english = await service.anonymous.get(html.unescape(switch.group(1)))
    assert "<html lang='en' dir='ltr'>" in english.text
    asked = await service.anonymous.get("/console/breakers", headers={"Accept-Language": "ar"})
    assert "next=%2Fconsole%2Fbreakers" in asked.text
    # A form sent once the session ended (Replay): signing in leads back to the page it was
    # on, not to a GET of its POST-only address (a 405 problem page).
    replay = await service.anonymous.post("/console/dead-letters/replay", data={"id": "1"})
    assert replay.status_code == 401
    assert "name='next' value='/console/dead-letters'>" in replay.text


async def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # Behind a proxy that ends TLS the request reaches the service over plain http (uvicorn
    # does not rewrite the scheme from X-Forwarded-Proto), yet the browser is on https.
    env = {"PUBLIC_BASE_URL": "https://pay.example.com"}
    async with running_service(sim, sqlite_url, env=env) as svc:
        signed = await svc.anonymous.post("/console/login", data={"key": ADMIN_KEY})
        assert signed.status_code == 303
        assert "Secure" in signed.headers["set-cookie"]


async def test_signing_out_ends_the_session_everywhere_not_only_in_the_browser(
    any_service: Service,
) -> None:
    # The cookie holds no state: clearing it in the browser left every copy of it valid
    # until it expired, eight hours on (a shared machine, a proxy's log, a stolen cookie).
    service = any_service
    async with signed_in(service) as browser:
        page = await browser.get("/console")
        assert page.status_code == 200
        copy = browser.cookies["pg_console"]
        out = await browser.post("/console/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/console/login"
        assert "pg_console" not in browser.cookies  # the browser's side
    async with httpx.AsyncClient(base_url=service.url, timeout=15) as thief:
        thief.cookies.set("pg_console", copy, path="/console")
        assert (await thief.get("/console")).status_code == 401
        assert (await thief.get("/console/live.json")).status_code == 401
    async with signed_in(service) as again:  # a new sign-in is a new session
        assert (await again.get("/console")).status_code == 200


async def test_the_timeline_says_how_long_paytabs_took_and_what_each_attempt_met(
    service: Service,
) -> None:
    # Issue 13: "gateway calls with latency and outcome". The metrics only hold distributions;
    # the payment's history now says what its own PayTabs calls met.
    fine = await service.create("10.00")
    service.sim.engine.set_faults(Faults(error_rate=1.0, error_statuses=[502], error_phase="after"))
    lost = await service.api.post(
        "/payments/v2/create",
        json={"amount": "11.00", "currency": "SAR", "description": "Order 2"},
        headers={"Idempotency-Key": "timeline-lost-answer-01"},
    )
    service.sim.engine.set_faults(Faults())
    assert lost.status_code == 202, lost.text
    async with signed_in(service) as browser:
        page = (await browser.get(f"/console/payments/{fine['id']}")).text
        said = re.search(r"hosted page created\. PayTabs: create, ([\d,]+) ms", page)
        assert said is not None, page
        unclear = (await browser.get(f"/console/payments/{lost.json()['id']}")).text
    # The 502 and the query that followed it (the breaker's settling of a lost answer).
    assert re.search(r"PayTabs: create, [\d,]+ ms \(\w+\)", unclear), unclear
    assert "no answer to the create-page request" in unclear


async def test_guessing_keys_at_the_sign_in_form_locks_that_address_out(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """Ten failed sign-ins from one address lock it out for a while, the right key included
    (a guesser must not learn which guess was right); other addresses sign in as before."""
    env = {"TRUSTED_PROXIES": "127.0.0.1"}
    async with running_service(sim, sqlite_url, env=env) as service:

        async def sign_in(key: str, address: str) -> httpx.Response:
            return await service.anonymous.post(
                "/console/login", data={"key": key}, headers={"X-Forwarded-For": address}
            )

        guesses = [await sign_in(f"guess-{n:04d}", "203.0.113.9") for n in range(9)]
        guesses.append(await sign_in(API_KEY, "203.0.113.9"))  # a merchant key is no admin's
        assert [g.status_code for g in guesses] == [401] * 9 + [403]
        locked = await sign_in(ADMIN_KEY, "203.0.113.9")
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 200
        assert "Too many failed sign-ins" in locked.text
        assert "set-cookie" not in locked.headers
        assert (await sign_in(ADMIN_KEY, "198.51.100.7")).status_code == 303


async def test_an_admin_key_sent_as_bearer_counts_against_the_same_lockout(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    """Bearer guesses at the console are sign-ins too: they lock the address out as the form's
    do, and once locked out the form and Bearer both refuse the right key."""
    env = {"TRUSTED_PROXIES": "127.0.0.1"}
    async with running_service(sim, sqlite_url, env=env) as service:

        async def bearer(key: str, address: str, path: str = "/console/live.json") -> int:
            headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": address}
            return (await service.anonymous.get(path, headers=headers)).status_code

        assert [await bearer(f"guess-{n}", "203.0.113.9") for n in range(10)] == [401] * 10
        assert await bearer(ADMIN_KEY, "203.0.113.9") == 429
        page = await service.anonymous.get(
            "/console",
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Forwarded-For": "203.0.113.9"},
        )
        assert page.status_code == 429
        assert int(page.headers["retry-after"]) > 200
        form = await service.anonymous.post(
            "/console/login", data={"key": ADMIN_KEY}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert form.status_code == 429
        assert await bearer(ADMIN_KEY, "198.51.100.7") == 200


@pytest.mark.parametrize("value", ["%C2%B2", "%E2%91%A0", "9" * 5000])
async def test_number_like_input_that_is_no_count_is_a_400_not_a_500(
    service: Service, value: str
) -> None:
    async with signed_in(service) as browser:
        cursor = await browser.get(f"/console/dead-letters?after={value}")
        assert cursor.status_code == 400
        shown = await browser.get(f"/console/dead-letters?replayed={value}")
        assert shown.status_code == 200
        assert "Put back to pending" not in shown.text
        page = await browser.get("/console/dead-letters")
        replay = await browser.post(
            "/console/dead-letters/replay",
            content=f"csrf={csrf_of(page.text)}&id={value}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert replay.status_code == 303
        assert replay.headers["location"].endswith("replayed=0")


async def test_a_date_range_that_runs_backwards_is_refused_with_a_message(
    service: Service,
) -> None:
    async with signed_in(service) as browser:
        answer = await browser.get("/console?from=2026-12-06&to=2026-12-01")
    assert answer.status_code == 400
    assert "The first date is after the second" in answer.text


@pytest.mark.parametrize("count", [501, 700])
async def test_a_replay_of_more_ids_than_one_replay_takes_is_a_400_page(
    service: Service, count: int
) -> None:
    async with signed_in(service) as browser:
        page = await browser.get("/console/dead-letters")
        ids = "&".join(f"id={n}" for n in range(1, count + 1))
        replay = await browser.post(
            "/console/dead-letters/replay",
            content=f"csrf={csrf_of(page.text)}&{ids}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert replay.status_code == 400
    assert "replay a page at a time" in replay.text
