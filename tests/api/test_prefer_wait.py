"""A merchant that would rather wait: ``Prefer: wait=N`` while the breaker is open; and the
truthful, spread Retry-After of the fast 503 for everyone else. Real HTTP, real simulator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from paytabs_guard.domain import Operation
from paytabs_guard.entrypoints import draining
from paytabs_guard.entrypoints.api.prefer_wait import requested_wait
from paytabs_guard.resilience import CircuitBreaker, CircuitOpenError
from paytabs_guard.resilience.admission import Reservation
from paytabs_guard.resilience.clock import ManualClock
from paytabs_guard.resilience.errors import CallTimeout
from paytabs_guard.resilience.events import BreakerState
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}


def create_waiting(service: Service, seconds: int) -> Coroutine[Any, Any, httpx.Response]:
    """A create that would rather wait ``seconds`` than be turned away."""
    return service.api.post(
        "/payments/v2/create",
        json=BODY,
        headers={"Idempotency-Key": new_key(), "Prefer": f"wait={seconds}"},
    )


def holding(service: Service) -> int:
    held: int = service.app.state.runtime.holding.held
    return held


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait (bounded) for a condition that no event announces: a request being held."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the request arrives over a real socket
            await asyncio.sleep(0.005)


async def test_the_fast_503_carries_the_precise_wait_and_a_spread_retry_after(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # Without the return line (test_return_pace.py has it) the precise wait is spread at random.
    async with running_service(sim, sqlite_url, env={"CIRCUIT_BREAKER_RETURN_RATE": "0"}) as svc:
        await _spread_at_random(svc)


async def _spread_at_random(service: Service) -> None:
    breaker = service.container.gateway.breakers.get("create")
    breaker.force_open()
    answers = []
    precise = []
    for _ in range(40):
        refused = await service.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": new_key()}
        )
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        body = refused.json()
        assert body["retry_after"] == int(refused.headers["retry-after"])
        precise.append(body["retry_after_ms"])
        assert "preference-applied" not in refused.headers
        answers.append(int(refused.headers["retry-after"]))
    # Forced open: look again in 5 s (nobody knows when the operator ends it), spread.
    # The header: the wait rounded up to whole seconds (5 or 6), plus a quarter at random.
    assert all(5 <= seconds <= 7 for seconds in answers)
    assert len(set(answers)) >= 2  # spread: the turned-away do not come back in one second
    assert all(5_000 <= ms <= 5_250 for ms in precise)
    assert len(set(precise)) >= 20


async def test_a_held_create_goes_through_the_moment_the_breaker_closes(
    service: Service,
) -> None:
    breaker = service.container.gateway.breakers.get("create")
    breaker.force_open()
    request = asyncio.create_task(
        service.api.post(
            "/payments/v2/create",
            json=BODY,
            headers={"Idempotency-Key": new_key(), "Prefer": "respond-async, wait=20"},
        )
    )
    await until(lambda: holding(service) == 1)
    assert not request.done()
    assert "\npaytabs_guard_requests_held 1.0\n" in (await service.anonymous.get("/metrics")).text
    breaker.reset()  # PayTabs is back: the state change wakes the held request
    created = await asyncio.wait_for(request, 10)
    assert created.status_code == 201, created.text
    assert created.headers["preference-applied"] == "wait=20"
    assert created.json()["state"] == "awaiting_customer"
    assert holding(service) == 0


async def test_a_held_request_that_outwaits_its_preference_gets_the_503(
    service: Service,
) -> None:
    service.container.gateway.breakers.get("create").force_open()
    refused = await create_waiting(service, 1)
    assert refused.status_code == 503
    assert refused.headers["preference-applied"] == "wait=1"
    assert holding(service) == 0


async def test_beyond_the_held_cap_requests_fail_fast(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    env = {"PREFER_WAIT_MAX_HELD": "1", "PREFER_WAIT_MAX_SECONDS": "5"}
    async with running_service(sim, sqlite_url, env=env) as service:
        breaker = service.container.gateway.breakers.get("create")
        breaker.force_open()
        first = asyncio.create_task(create_waiting(service, 60))
        await until(lambda: holding(service) == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        second = await create_waiting(service, 60)
        assert second.status_code == 503
        assert "preference-applied" not in second.headers  # not held: the cap was reached
        assert loop.time() - started < 1.0
        breaker.reset()
        created = await asyncio.wait_for(first, 10)
        assert created.status_code == 201
        assert created.headers["preference-applied"] == "wait=5"  # the server's cap applied


async def test_without_the_header_nothing_is_held(service: Service) -> None:
    service.container.gateway.breakers.get("create").force_open()
    refused = await service.api.post(
        "/payments/v2/create",
        json=BODY,
        headers={"Idempotency-Key": new_key(), "Prefer": "return=minimal"},
    )
    assert refused.status_code == 503
    assert "preference-applied" not in refused.headers


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [
        ("wait=20", 20),
        ("respond-async, wait=20", 20),
        ("RESPOND-ASYNC , , Wait = 7", 7),  # (empty list elements, spaces around "=")
        ('wait="9"', 9),
        ("wait=10, wait=3", 10),  # only the first counts
        ("wait=12; x=y", 12),
        ('note="a, wait=3", wait=4', 4),  # a comma inside a quoted string ends nothing
        ("wait=1000000", 1_000_000),  # more than six digits: capped by the server, not lost
        ("wait=" + "9" * 40, 2**31),
        ("wait=" + "0" * 30 + "2", 2),  # leading zeros make no number larger
        ("wait=00", 0),
        ("handling=lenient; wait=2", None),  # a parameter of "handling", not a preference
        ("respond-async; wait=9", None),
        ("wait=-1", None),
        ("wait=1.5", None),
        ("wait=", None),
        ("return=minimal", None),
    ],
)
def test_the_prefer_header_is_read_as_rfc_7240_writes_it(prefer: str, seconds: int | None) -> None:
    request = Request({"type": "http", "headers": [(b"prefer", prefer.encode())]})
    assert requested_wait(request) == seconds


@pytest.mark.parametrize(
    "prefer",
    [
        "a" + " " * 30_000 + "x",
        "a;" + " " * 30_000 + '"',
        'a="b"' + " " * 30_000 + "x",
        "wait=1" + "\t " * 15_000 + "x",
    ],
)
def test_a_hostile_prefer_header_is_read_in_one_pass(prefer: str) -> None:
    # Runs of spaces the old pattern could split between its \s* in every way: 8 s of event
    # loop for one create whose head (32 KiB at most) held one such header.
    request = Request({"type": "http", "headers": [(b"prefer", prefer.encode())]})
    started = time.perf_counter()
    assert requested_wait(request) is None
    assert time.perf_counter() - started < 0.5


async def test_a_wait_longer_than_the_cap_is_held_for_the_cap_and_a_parameter_is_no_wait(
    service: Service,
) -> None:
    breaker = service.container.gateway.breakers.get("create")
    breaker.force_open()
    refused = await service.api.post(
        "/payments/v2/create",
        json=BODY,
        headers={"Idempotency-Key": new_key(), "Prefer": "handling=lenient; wait=2"},
    )
    assert refused.status_code == 503
    assert "preference-applied" not in refused.headers  # not held: nobody asked to wait
    request = asyncio.create_task(create_waiting(service, 1_000_000))
    await until(lambda: holding(service) == 1 or request.done())
    assert not request.done(), request.result().text
    breaker.reset()
    created = await asyncio.wait_for(request, 10)
    assert created.status_code == 201, created.text
    assert created.headers["preference-applied"] == "wait=30"  # PREFER_WAIT_MAX_SECONDS


# ---- GET /payments/v2/process/{id}: asking PayTabs while its query circuit is open --------------


async def test_process_says_when_paytabs_can_be_asked_again(service: Service) -> None:
    payment = await service.create()
    service.container.gateway.breakers.get("query").force_open()
    answer = await service.api.get(f"/payments/v2/process/{payment['id']}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["confirmed"] is False
    assert body["state"] == "awaiting_customer"
    # forced open: look again in 5 s, spread by at most 250 ms like the 503's
    assert 5_000 <= body["retry_after_ms"] <= 5_250
    assert "preference-applied" not in answer.headers

    service.container.gateway.breakers.get("query").reset()
    confirmed = (await service.api.get(f"/payments/v2/process/{payment['id']}")).json()
    assert confirmed["confirmed"] is True
    assert confirmed["retry_after_ms"] is None


async def test_a_held_process_asks_paytabs_the_moment_the_circuit_closes(
    service: Service,
) -> None:
    payment = await service.create()
    breaker = service.container.gateway.breakers.get("query")
    breaker.force_open()
    request = asyncio.create_task(
        service.api.get(f"/payments/v2/process/{payment['id']}", headers={"Prefer": "wait=20"})
    )
    await until(lambda: holding(service) == 1)
    assert not request.done()
    assert "\npaytabs_guard_requests_held 1.0\n" in (await service.anonymous.get("/metrics")).text
    breaker.reset()
    answer = await asyncio.wait_for(request, 10)
    assert answer.status_code == 200
    assert answer.headers["preference-applied"] == "wait=20"
    assert answer.json()["confirmed"] is True
    assert holding(service) == 0


async def test_a_refund_turned_away_stores_nothing_and_a_held_one_says_its_wait_was_applied(
    service: Service,
) -> None:
    payment = await service.create()
    await service.pay(payment)
    await service.callbacks_done()
    assert (await service.get(payment["id"]))["state"] == "completed"
    breaker = service.container.gateway.breakers.get("follow_up")
    breaker.force_open()
    key = new_key()
    refund = f"/payments/v2/{payment['id']}/refund"
    refused = await service.api.post(
        refund, json={"amount": "10.00"}, headers={"Idempotency-Key": key}
    )
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "preference-applied" not in refused.headers
    held = await service.api.post(
        refund, json={"amount": "10.00"}, headers={"Idempotency-Key": new_key(), "Prefer": "wait=1"}
    )
    assert held.status_code == 503
    assert held.headers["preference-applied"] == "wait=1"  # as for a create
    assert holding(service) == 0
    # Nothing was stored: no hold on the payment, the key unclaimed, nothing sent to PayTabs.
    assert (await service.get(payment["id"]))["refunded"] == "0.00"
    assert len(await service.simulated(payment["cart_id"])) == 1  # the sale alone
    breaker.reset()
    done = await service.api.post(
        refund, json={"amount": "10.00"}, headers={"Idempotency-Key": key}
    )
    assert done.status_code == 200, done.text
    assert done.json()["refunded"] == "10.00"
    # Its answer is the key's now: with the circuit open again, the retry is answered with it.
    breaker.force_open()
    again = await service.api.post(
        refund, json={"amount": "10.00"}, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 200
    assert again.json()["refunded"] == "10.00"
    # A payment that does not exist is told so, held or not: no wait, no 503 to come back to.
    for headers in ({}, {"Prefer": "wait=5"}):
        unknown = await service.api.post(
            "/payments/v2/pay_0000000000000000000000000/refund",
            json={"amount": "10.00"},
            headers={"Idempotency-Key": new_key(), **headers},
        )
        assert unknown.status_code == 404, unknown.text
        assert "preference-applied" not in unknown.headers
    assert holding(service) == 0


async def test_a_held_request_is_answered_when_a_graceful_shutdown_begins(
    sim: RunningSimulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deploy while PayTabs is down: the held create only waits, so it is answered (the
    # breaker's 503, nothing stored) as the shutdown begins, instead of holding the shutdown
    # for its whole grace and ending cut off (503 interrupted, a traceback in the log).
    env = {"PREFER_WAIT_MAX_SECONDS": "300"}
    shutdowns: list[asyncio.Event] = []  # the server's event, as the held request sees it
    real = draining.of_request

    def seen(scope: Any) -> asyncio.Event | None:
        event = real(scope)
        if event is not None:
            shutdowns.append(event)
        return event

    monkeypatch.setattr(draining, "of_request", seen)
    async with running_service(sim, sqlite_url, env=env) as service:
        breaker = service.container.gateway.breakers.get("create")
        breaker.force_open()
        held = asyncio.create_task(create_waiting(service, 300))
        try:
            await until(lambda: holding(service) == 1)
            # What the server's protocol does as its shutdown begins (test_http_head_limit.py).
            shutdowns[-1].set()
            answer = await asyncio.wait_for(held, 10)
        finally:
            breaker.reset()  # failing or not, nothing stays held to stall the server's exit
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"].endswith("/gateway-unavailable")
        assert holding(service) == 0
        assert (await service.api.get("/payments/v2")).json()["data"] == []  # nothing stored


# ---- the trial slot someone else took, the trial that failed: held on, not turned away ----------

# One trial slot, no probes and no return line: the test alone decides who takes the slot.
ONE_SLOT = {
    "CIRCUIT_BREAKER_HALF_OPEN_MAX_CALLS": "1",
    "CIRCUIT_BREAKER_PROBE_INTERVAL": "0",
    "CIRCUIT_BREAKER_RETURN_RATE": "0",
}


async def _fails() -> None:
    raise CallTimeout("create", 1.0)


async def trip(breaker: CircuitBreaker) -> None:
    """Open the breaker as failed PayTabs calls do."""
    while breaker.state is not BreakerState.OPEN:
        with contextlib.suppress(CallTimeout, CircuitOpenError):
            await breaker.call(_fails)


def slot_taken_first(
    service: Service,
    breaker: CircuitBreaker,
    monkeypatch: pytest.MonkeyPatch,
    *methods: str,
    only: Operation | None = None,
) -> list[Reservation]:
    """Another request takes the trial slot just before the gateway's ``methods`` run (for
    ``only`` that operation: the race a crowd runs between the cheap check and the
    reservation, or the call). Returns that request's reservation, once it is taken."""
    gateway = service.container.gateway.gateway
    taken: list[Reservation] = []
    for name in methods:
        real = getattr(gateway, name)

        def before(*args: Any, real: Any = real, **kwargs: Any) -> Any:
            if not taken and (only is None or only in args):
                taken.append(breaker.reserve())
            return real(*args, **kwargs)

        monkeypatch.setattr(gateway, name, before)
    return taken


def another_request_reserves_first(
    service: Service, breaker: CircuitBreaker, monkeypatch: pytest.MonkeyPatch
) -> list[Reservation]:
    """The next create's reservation finds the trial slot just taken by another request."""
    return slot_taken_first(service, breaker, monkeypatch, "reserve", only=Operation.CREATE)


async def test_a_create_that_arrives_for_a_due_trial_and_loses_the_slot_is_held(
    sim: RunningSimulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was not held (a trial was due: nothing to wait for), then another request took the
    # slot before its reservation: it got the fast 503, no Preference-Applied, 20 s unused.
    clock = ManualClock()
    async with running_service(sim, sqlite_url, env=ONE_SLOT, monotonic=clock) as service:
        breaker = service.container.gateway.breakers.get("create")
        await trip(breaker)
        clock.advance(60.0)  # the open period is over: the next call is the trial
        taken = another_request_reserves_first(service, breaker, monkeypatch)
        request = asyncio.create_task(create_waiting(service, 20))
        await until(lambda: bool(taken) and (holding(service) == 1 or request.done()))
        assert not request.done(), request.result().text  # held for the slot, not turned away
        taken[0].release()  # the other request stops before calling PayTabs: its slot is free
        created = await asyncio.wait_for(request, 10)
        assert created.status_code == 201, created.text
        assert created.headers["preference-applied"] == "wait=20"
        assert len(await service.simulated(created.json()["cart_id"])) == 1  # sent once
        assert holding(service) == 0


async def test_a_held_create_stays_held_when_the_trial_it_was_woken_for_fails(
    sim: RunningSimulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    async with running_service(sim, sqlite_url, env=ONE_SLOT, monotonic=clock) as service:
        breaker = service.container.gateway.breakers.get("create")
        await trip(breaker)
        request = asyncio.create_task(create_waiting(service, 20))
        await until(lambda: holding(service) == 1)
        clock.advance(60.0)
        first = breaker.reserve()  # a trial: half-open, its one slot taken; the held one waits
        taken = another_request_reserves_first(service, breaker, monkeypatch)
        first.release()  # the slot is free again and the held create is woken for it ...
        # ... but another request takes it before the held one's reservation
        await until(lambda: bool(taken) and (holding(service) == 1 or request.done()))
        assert not request.done(), request.result().text  # held again, 20 s are not over
        with taken[0], contextlib.suppress(CallTimeout):
            await breaker.call(_fails)  # that trial fails: the breaker merely re-opens
        assert breaker.state is BreakerState.OPEN
        await asyncio.sleep(0)  # (anything the re-opening set off runs)
        assert not request.done()
        assert holding(service) == 1
        breaker.reset()  # PayTabs is back
        created = await asyncio.wait_for(request, 10)
        assert created.status_code == 201, created.text
        assert created.headers["preference-applied"] == "wait=20"
        assert len(await service.simulated(created.json()["cart_id"])) == 1  # sent once
        assert holding(service) == 0


async def test_a_held_refund_that_loses_the_trial_slot_it_was_woken_for_is_held_again(
    sim: RunningSimulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    async with running_service(sim, sqlite_url, env=ONE_SLOT, monotonic=clock) as service:
        payment = await service.create()
        await service.pay(payment)
        await service.callbacks_done()
        breaker = service.container.gateway.breakers.get("follow_up")
        await trip(breaker)
        request = asyncio.create_task(
            service.api.post(
                f"/payments/v2/{payment['id']}/refund",
                json={"amount": "10.00"},
                headers={"Idempotency-Key": new_key(), "Prefer": "wait=20"},
            )
        )
        await until(lambda: holding(service) == 1)
        clock.advance(60.0)
        first = breaker.reserve()  # a trial: half-open, its one slot taken; the refund waits
        # Another request takes the slot after the refund is woken, before its call leaves.
        taken = slot_taken_first(service, breaker, monkeypatch, "reserve", "follow_up")
        first.release()
        await until(lambda: bool(taken) and (holding(service) == 1 or request.done()))
        assert not request.done(), request.result().text  # held again, 20 s are not over
        with taken[0], contextlib.suppress(CallTimeout):
            await breaker.call(_fails)  # that trial fails: the breaker re-opens
        assert holding(service) == 1
        breaker.reset()
        refunded = await asyncio.wait_for(request, 10)
        assert refunded.status_code == 200, refunded.text
        assert refunded.headers["preference-applied"] == "wait=20"
        assert refunded.json()["refunded"] == "10.00"
        assert len(await service.simulated(payment["cart_id"])) == 2  # the sale, one refund


async def test_a_held_process_that_loses_the_query_slot_it_was_woken_for_is_held_again(
    sim: RunningSimulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    async with running_service(sim, sqlite_url, env=ONE_SLOT, monotonic=clock) as service:
        payment = await service.create()
        breaker = service.container.gateway.breakers.get("query")
        await trip(breaker)
        request = asyncio.create_task(
            service.api.get(f"/payments/v2/process/{payment['id']}", headers={"Prefer": "wait=20"})
        )
        await until(lambda: holding(service) == 1)
        clock.advance(60.0)
        first = breaker.reserve()  # a trial: half-open, its one slot taken; the request waits
        taken = slot_taken_first(service, breaker, monkeypatch, "transactions")
        first.release()  # woken for the free slot, which another query takes first
        await until(lambda: bool(taken) and (holding(service) == 1 or request.done()))
        assert not request.done(), request.result().text  # held again, 20 s are not over
        with taken[0], contextlib.suppress(CallTimeout):
            await breaker.call(_fails)  # that trial fails: the breaker re-opens
        assert holding(service) == 1
        breaker.reset()
        answer = await asyncio.wait_for(request, 10)
        assert answer.status_code == 200
        assert answer.headers["preference-applied"] == "wait=20"
        assert answer.json()["confirmed"] is True
        assert holding(service) == 0
