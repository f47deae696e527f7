"""Failures in a row open the breaker before the window's rate would (a hard outage)."""

from __future__ import annotations

import pytest
from breaker_support import fail, make_breaker, succeed

from paytabs_guard.resilience import BreakerConfig, BreakerEvent, EventType, ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_a_run_of_failures_opens_although_the_window_is_mostly_successes(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, consecutive_failures=5)
    await succeed(breaker, 20)  # the seconds of sales before the gateway went down
    await fail(breaker, 4)
    assert breaker.state == "closed"  # 4 / 24 failed, and only 4 in a row
    await fail(breaker)
    assert breaker.state == "open"


async def test_the_reason_says_which_rule_opened_it(clock: ManualClock) -> None:
    breaker = make_breaker(clock, consecutive_failures=3)
    events: list[BreakerEvent] = []
    breaker.subscribe(events.append)
    await succeed(breaker, 10)
    await fail(breaker, 3)
    (opened,) = [e for e in events if e.type is EventType.OPENED]
    assert opened.reason == "consecutive_failures"
    assert opened.error_rate == pytest.approx(100.0 * 3 / 13)


async def test_a_success_between_failures_starts_the_count_again(clock: ManualClock) -> None:
    breaker = make_breaker(clock, consecutive_failures=3)
    await succeed(breaker, 20)
    for _ in range(5):  # a gateway failing one call in three is degraded, not down
        await fail(breaker, 2)
        await succeed(breaker)
    assert breaker.state == "closed"


async def test_without_the_setting_only_the_rate_decides(clock: ManualClock) -> None:
    breaker = make_breaker(clock)  # the seed's config: consecutive_failures None
    await succeed(breaker, 20)
    await fail(breaker, 19)
    assert breaker.state == "closed"  # 19 / 39 = 48.7 %, under 50 %
    await fail(breaker)
    assert breaker.state == "open"  # 20 / 40


async def test_the_count_starts_again_after_a_recovery(clock: ManualClock) -> None:
    breaker = make_breaker(clock, consecutive_failures=3, volume_threshold=100)
    await fail(breaker, 3)
    assert breaker.state == "open"
    clock.advance(BreakerConfig().reset_timeout)
    await succeed(breaker)  # the trial closes it
    assert breaker.state == "closed"
    await fail(breaker, 2)
    assert breaker.state == "closed"  # the failures from before the recovery do not count


def test_the_setting_must_be_positive() -> None:
    with pytest.raises(ValueError, match="consecutive_failures"):
        BreakerConfig(consecutive_failures=0)
