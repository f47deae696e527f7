"""The call timeout inside the breaker, and cancellation by the caller.

The timeout has to cancel a real task, so it runs on the event loop's clock: these tests use
timeouts of 10-50 ms and wait on events, never on sleeps.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from breaker_support import Boom, Gate, Recorder, boom, make_breaker, ok, settle, trip

from paytabs_guard.resilience import CallTimeout, CircuitOpenError, ManualClock
from paytabs_guard.resilience.deadline import DeadlineTimer

pytestmark = pytest.mark.anyio

TINY = 0.01


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_a_call_that_outlives_the_timeout_is_cancelled_and_fails(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)
    recorder = Recorder()
    breaker.subscribe(recorder)
    gate = Gate()  # never released
    with pytest.raises(CallTimeout) as raised:
        await breaker.call(gate)
    assert gate.cancelled == 1  # the wrapped coroutine saw the cancellation
    assert raised.value.name == "create"
    assert raised.value.timeout_seconds == TINY
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    assert asyncio.current_task() is not None
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    window = breaker.snapshot().window
    assert (window.failures, window.timeouts, window.successes) == (1, 1, 0)
    assert recorder.types == ["timeout"]
    assert recorder.events[0].error_type == "paytabs_guard.resilience.errors.CallTimeout"


async def test_timeouts_trip_the_breaker(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)
    for _ in range(5):
        with pytest.raises(CallTimeout):
            await breaker.call(Gate())
    assert breaker.state == "open"


async def test_a_timeout_goes_to_the_fallback(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)
    seen: list[BaseException] = []

    async def fallback(error: BaseException) -> str:
        seen.append(error)
        return "fallback"

    assert await breaker.call(Gate(), fallback=fallback) == "fallback"
    assert isinstance(seen[0], CallTimeout)


async def test_fast_calls_are_untouched_by_the_timeout(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)
    for _ in range(100):
        assert await breaker.call(ok) == "ok"
    slow = Gate()
    task = asyncio.create_task(breaker.call(slow))
    with pytest.raises(CallTimeout):
        await task
    assert breaker.snapshot().window.successes == 100


async def test_only_the_calls_that_overrun_time_out(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=0.05)  # margin for the quick ones on a busy box
    quick, hung = Gate(), Gate()
    tasks = [asyncio.create_task(breaker.call(quick)) for _ in range(5)]
    tasks += [asyncio.create_task(breaker.call(hung)) for _ in range(5)]
    await settle()
    quick.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[:5] == ["ok"] * 5
    assert all(isinstance(result, CallTimeout) for result in results[5:])
    assert hung.cancelled == 5


async def test_a_timeout_in_a_trial_reopens(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)
    await trip(breaker)
    clock.advance(30)
    with pytest.raises(CallTimeout):
        await breaker.call(Gate())
    assert breaker.state == "open"


async def test_a_caller_cancelling_is_neither_success_nor_failure(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=30.0)
    recorder = Recorder()
    breaker.subscribe(recorder)
    gate = Gate()
    task = asyncio.create_task(breaker.call(gate))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.cancelled == 1
    snapshot = breaker.snapshot()
    assert (snapshot.window.calls, snapshot.lifetime.cancelled) == (0, 1)
    assert recorder.events == []


async def test_an_outer_timeout_is_the_callers_cancellation(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=30.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(TINY):
            await breaker.call(Gate())
    snapshot = breaker.snapshot()
    assert (snapshot.window.calls, snapshot.lifetime.cancelled) == (0, 1)


async def test_a_timeout_error_raised_by_the_call_is_just_an_exception(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, call_timeout=30.0)

    async def own_timeout() -> str:
        raise TimeoutError("the HTTP client gave up")

    with pytest.raises(TimeoutError, match="HTTP client"):
        await breaker.call(own_timeout)
    window = breaker.snapshot().window
    assert (window.failures, window.timeouts) == (1, 0)


async def test_a_call_that_swallows_the_cancellation_keeps_its_result(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)
    released = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            released.set()
        return "finished anyway"

    assert await breaker.call(stubborn) == "finished anyway"
    assert released.is_set()
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_the_timeout_works_again_on_a_new_event_loop() -> None:
    breaker = make_breaker(ManualClock(), call_timeout=TINY)

    async def once() -> None:
        with pytest.raises(CallTimeout):
            await breaker.call(Gate())

    for _ in range(2):
        # A fresh loop each time, as consecutive tests or asyncio.run() calls would use.
        await asyncio.to_thread(asyncio.run, once())


def test_the_timer_needs_a_task() -> None:
    timer = DeadlineTimer(1.0)
    with pytest.raises(RuntimeError):
        timer.enter()


async def test_the_timer_forgets_finished_calls() -> None:
    timer = DeadlineTimer(30.0)
    tokens = [timer.enter() for _ in range(3)]
    assert len(timer) == 3
    for token in tokens:
        timer.leave(token)
    assert len(timer) == 0


async def test_rejections_and_failures_leave_no_cyclic_garbage(clock: ManualClock) -> None:
    """Every error is freed by reference counting: nothing piles up for the cyclic GC."""
    breaker = make_breaker(clock, call_timeout=30.0)
    opened = make_breaker(clock)
    await trip(opened)
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            with pytest.raises(Boom):
                await breaker.call(boom)
            breaker.reset()
            with pytest.raises(CircuitOpenError):
                await opened.call(ok)
        assert gc.collect() == 0
    finally:
        gc.enable()


async def test_timeouts_leave_no_cyclic_garbage(clock: ManualClock) -> None:
    breaker = make_breaker(clock, call_timeout=TINY)

    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(CallTimeout):
        await breaker.call(hang)  # warm up: the first timer handle, lazily built state
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            with pytest.raises(CallTimeout):
                await breaker.call(hang)
        garbage = gc.collect()
    finally:
        gc.enable()
    assert garbage == 0


async def test_a_hang_that_ended_before_its_calls_timed_out_trips_nothing(
    clock: ManualClock,
) -> None:
    # A short hang: twelve calls go into it; then PayTabs answers again, and a call sent after
    # them is answered before they time out. Their timeouts, arriving together a call timeout
    # later, are old news: counted, they tripped the breaker on a healthy gateway (ten in a
    # row, or the window's rate) long after the hang ended.
    breaker = make_breaker(clock, call_timeout=0.05)
    recorder = Recorder()
    breaker.subscribe(recorder)
    hung = Gate()  # never released
    stuck = [asyncio.create_task(breaker.call(hung)) for _ in range(12)]
    await settle()
    clock.advance(1.0)
    assert await breaker.call(ok) == "ok"
    results = await asyncio.gather(*stuck, return_exceptions=True)
    assert all(isinstance(result, CallTimeout) for result in results)
    assert breaker.state == "closed"
    window = breaker.snapshot().window
    assert (window.failures, window.timeouts, window.successes) == (0, 0, 1)
    timeouts = [
        e for e, kind in zip(recorder.events, recorder.types, strict=True) if kind == "timeout"
    ]
    assert [event.reason for event in timeouts] == ["stale"] * 12  # still told, as old news
    # A call sent after the last answer that times out is news: counted, and four trip it.
    for _ in range(4):
        with pytest.raises(CallTimeout):
            await breaker.call(Gate())
    assert breaker.state == "open"
