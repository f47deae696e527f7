"""A gateway that stops answering opens the breaker before its calls time out (``stall_after``).

Counted at completion, a hang shows only at the call timeout (27 s with the service's
defaults): every call sent meanwhile hung, and the connections they held were still taken after
the recovery. The breaker now sees calls pile up unanswered. Driven with a manual clock; the
calls are tasks that wait on an event, as calls into a hanging gateway do.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest
from breaker_support import SEED, Boom, make_breaker, ok, settle

from paytabs_guard.resilience import BreakerConfig, CircuitBreaker, CircuitOpenError, ManualClock

pytestmark = pytest.mark.anyio

STALLING = replace(SEED, stall_after=5.0, volume_threshold=5)


class Gateway:
    """Calls that hang until released (or answer at once once it answers again)."""

    def __init__(self) -> None:
        self.hanging = True
        self.released = asyncio.Event()

    async def call(self) -> str:
        if self.hanging:
            await self.released.wait()
        return "ok"


async def send(breaker: CircuitBreaker, gateway: Gateway, n: int) -> list[asyncio.Task[str]]:
    tasks = [asyncio.create_task(breaker.call(gateway.call)) for _ in range(n)]
    await settle()
    return tasks


async def finish(gateway: Gateway, tasks: list[asyncio.Task[str]]) -> None:
    gateway.released.set()
    for task in tasks:
        with contextlib.suppress(Exception):
            await task


async def test_calls_piling_up_unanswered_open_the_breaker_after_stall_after() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, config=STALLING)
    await breaker.call(ok)  # the last answer, just before the hang
    gateway = Gateway()
    hung = []
    started = clock()
    for _ in range(100):  # ten calls a second into a gateway that answers nothing
        clock.advance(0.1)
        hung += await send(breaker, gateway, 1)
        if breaker.state != "closed":
            break
    # Five calls have waited 5 s with no answer since they left: the call after them found the
    # breaker stalled and opened it (and was turned away). Not at a call timeout.
    assert breaker.state == "open"
    assert 5.4 <= clock() - started <= 5.7
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    await finish(gateway, hung)


async def test_a_slow_gateway_that_keeps_answering_never_stalls() -> None:
    """Every call takes 4.5 s, nearly stall_after, from a cold start: answers keep coming, each
    newer than the calls still out, so none of those is counted. (A gateway slower than
    stall_after from the first call would be taken for a hung one: the setting must be above the
    slowest normal answer, as a call timeout is.)"""
    clock = ManualClock()
    breaker = make_breaker(clock, config=STALLING)
    gates: list[asyncio.Event] = []
    tasks: list[asyncio.Task[str]] = []

    async def slow() -> str:
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return "ok"

    for step in range(300):  # 30 s, a call every 100 ms, each answered 4.5 s after it left
        clock.advance(0.1)
        if step >= 45:
            gates[step - 45].set()
            await settle()
        tasks.append(asyncio.create_task(breaker.call(slow)))
        await settle()
        assert breaker.state == "closed", step
    for gate in gates:
        gate.set()
    assert all(result == "ok" for result in await asyncio.gather(*tasks))


async def test_a_quiet_shop_with_fewer_calls_than_the_volume_does_not_stall() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, config=STALLING)
    gateway = Gateway()
    hung = await send(breaker, gateway, 4)  # fewer than volume_threshold
    clock.advance(20.0)
    assert await breaker.call(ok) == "ok"  # admitted, and it answers: not stalled
    assert breaker.state == "closed"
    await finish(gateway, hung)


async def test_calls_sent_before_the_last_answer_are_not_counted() -> None:
    """Five calls hang, then another call is answered: the gateway answers, the five are just
    slow ones. A call admitted long after is not turned away for them."""
    clock = ManualClock()
    breaker = make_breaker(clock, config=STALLING)
    gateway = Gateway()
    hung = await send(breaker, gateway, 5)
    clock.advance(1.0)
    assert await breaker.call(ok) == "ok"
    clock.advance(10.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    await finish(gateway, hung)


async def test_failing_fast_is_an_answer_and_the_rate_decides() -> None:
    """Calls that fail at once (connection refused) are answers: the error rate judges them,
    the stall watch never does."""
    clock = ManualClock()
    breaker = make_breaker(clock, config=replace(STALLING, error_threshold_percentage=100.0))

    async def refused() -> str:
        raise Boom

    for _ in range(3):
        clock.advance(3.0)
        with pytest.raises(Boom):
            await breaker.call(refused)
    assert breaker.state == "closed"


def test_stall_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_after"):
        BreakerConfig(stall_after=0.0)
    with pytest.raises(ValueError, match="stall_after"):
        BreakerConfig(stall_after=float("inf"))
