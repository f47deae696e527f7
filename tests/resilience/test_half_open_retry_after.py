"""While half-open with every trial slot taken, a rejection says when the trial will be decided.

The trial ends within the call timeout; the breaker then closes (come back now) or reopens (the
next rejection gives the new wait). Pointing callers at the trial's patience instead (up to the
reset timeout, 30 s by default) kept merchants away long after the breaker had closed: found by
``paytabs-guard bench chaos`` (scenario c).
"""

from __future__ import annotations

import asyncio

import pytest
from breaker_support import Gate, make_breaker, ok, settle, trip

from paytabs_guard.resilience import CircuitOpenError, ManualClock

pytestmark = pytest.mark.anyio


async def test_a_rejection_while_half_open_points_at_the_trials_deadline() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, call_timeout=3.0)  # reset timeout 30 s
    await trip(breaker)
    clock.advance(30)
    gate = Gate()
    trial = asyncio.create_task(breaker.call(gate))
    await settle()
    assert breaker.state == "half_open"
    clock.advance(1)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.retry_after_seconds == pytest.approx(2.0)  # not 29
    gate.release.set()
    assert await trial == "ok"
    assert breaker.state == "closed"


async def test_without_a_call_timeout_the_patience_still_applies() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock)  # no call timeout: only the patience bounds a trial
    await trip(breaker)
    clock.advance(30)
    gate = Gate()
    trial = asyncio.create_task(breaker.call(gate))
    await settle()
    clock.advance(1)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.retry_after_seconds == pytest.approx(29.0)
    gate.release.set()
    assert await trial == "ok"


async def test_rejection_wait_answers_without_calling() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, call_timeout=3.0)
    assert breaker.rejection_wait() is None  # closed
    await trip(breaker)
    clock.advance(10)
    assert breaker.rejection_wait() == pytest.approx(20.0)  # open
    clock.advance(20)
    assert breaker.rejection_wait() is None  # due: the next call is the trial
    assert breaker.state == "open"  # asking changed nothing
    gate = Gate()
    trial = asyncio.create_task(breaker.call(gate))
    await settle()
    clock.advance(0.5)
    assert breaker.rejection_wait() == pytest.approx(2.5)  # the trial's slot is taken
    gate.release.set()
    assert await trial == "ok"
    assert breaker.rejection_wait() is None  # closed again
    breaker.force_open()
    assert breaker.rejection_wait() == pytest.approx(5.0)  # a cadence: the operator decides
    breaker.disable()
    assert breaker.rejection_wait() is None
    assert breaker.snapshot().lifetime.rejects == 0  # asking is not a rejection
