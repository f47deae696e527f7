"""A gateway that completes some calls and fails more than the threshold: degraded, not down.

An outside run of PayTabs failing 60 % of calls: with the breaker 15 % of orders were paid,
without it 97 %, because trials that partly failed re-opened the breaker for ever longer
periods. Trials over the threshold that partly succeeded now close it with the error rate set
aside; a gateway that then goes down still opens it, by failures in a row (or stalled calls).
"""

from __future__ import annotations

import pytest
from breaker_support import Boom, Recorder, boom, fail, make_breaker, succeed, trip

from paytabs_guard.resilience import CircuitBreaker, ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def degraded(clock: ManualClock) -> CircuitBreaker:
    breaker = make_breaker(clock, half_open_max_calls=3, consecutive_failures=10)
    await trip(breaker)
    clock.advance(30)
    with pytest.raises(Boom):
        await breaker.call(boom)
    await succeed(breaker)
    with pytest.raises(Boom):
        await breaker.call(boom)
    assert breaker.state == "closed"
    assert breaker.snapshot().degraded is True
    return breaker


async def test_a_degraded_gateway_keeps_its_calls_at_sixty_percent_failures(
    clock: ManualClock,
) -> None:
    breaker = await degraded(clock)
    for _ in range(20):  # 3 failures in every 5 calls, never 10 in a row
        await succeed(breaker, 2)
        await fail(breaker, 3)
    window = breaker.snapshot().window
    assert window.failures * 100 >= 50 * window.calls  # over the threshold...
    assert breaker.state == "closed"  # ...and every call still went to PayTabs
    assert window.rejects == 0


async def test_a_degraded_gateway_that_goes_down_opens_on_failures_in_a_row(
    clock: ManualClock,
) -> None:
    breaker = await degraded(clock)
    await succeed(breaker, 2)
    recorder = Recorder()
    breaker.subscribe(recorder)
    await fail(breaker, 10)
    assert breaker.state == "open"
    assert breaker.snapshot().degraded is False
    [opened] = [e for e in recorder.events if e.reason == "consecutive_failures"]
    assert opened.state == "open"


async def test_once_the_rate_is_back_under_the_threshold_it_counts_again(
    clock: ManualClock,
) -> None:
    breaker = await degraded(clock)
    await succeed(breaker, 9)
    await fail(breaker)  # 1 in 10: healthy again
    assert breaker.snapshot().degraded is False
    recorder = Recorder()
    breaker.subscribe(recorder)
    await fail(breaker, 8)  # 9 of 18: the next trouble opens it by the rate, as before
    assert breaker.state == "open"
    assert [e.reason for e in recorder.events if e.reason] == ["error_rate"]


async def test_trials_that_all_failed_reopen_as_before(clock: ManualClock) -> None:
    breaker = make_breaker(clock, half_open_max_calls=3, consecutive_failures=10)
    await trip(breaker)
    clock.advance(30)
    await fail(breaker, 2)
    assert breaker.state == "open"
    assert breaker.snapshot().degraded is False


async def test_another_instances_degraded_close_sets_the_rate_aside_here_too(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, consecutive_failures=10)
    await trip(breaker)
    breaker.apply_shared_close(degraded=True)
    assert breaker.state == "closed"
    assert breaker.snapshot().degraded is True
    for _ in range(5):
        await succeed(breaker, 2)
        await fail(breaker, 3)
    assert breaker.state == "closed"


async def test_without_a_limit_on_failures_in_a_row_trials_decide_as_before(
    clock: ManualClock,
) -> None:
    # Nothing would open a degraded breaker on a gateway gone down: it re-opens.
    breaker = make_breaker(clock, half_open_max_calls=3, consecutive_failures=None)
    await trip(breaker)
    clock.advance(30)
    await fail(breaker)
    await succeed(breaker)
    await fail(breaker)
    assert breaker.state == "open"
