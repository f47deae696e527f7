"""The retry policy: attempts, full-jitter backoff, cap, Retry-After, deadline and budget.

Time is a fake clock; ``sleep`` only advances it, so nothing here waits.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paytabs_guard.resilience.retry import RetryBudget, RetryConfig, RetryPolicy
from testkit.clock import FakeClock

pytestmark = pytest.mark.anyio


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after


class Final(Exception):
    pass


def policy(time: FakeClock, **overrides: Any) -> RetryPolicy:
    config = replace(RetryConfig(retries=3, base_delay=1.0, max_delay=10.0), **overrides)
    return RetryPolicy(config, clock=time.monotonic, sleep=time.sleep, rng=random.Random(7))


def failing(times: int, error: Exception) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return calls, operation


async def test_retries_then_succeeds_with_at_most_retries_plus_one_attempts() -> None:
    time = FakeClock()
    calls, operation = failing(3, Flaky())
    result = await policy(time).call(operation, is_retryable=lambda e: isinstance(e, Flaky))
    assert result == "ok"
    assert len(calls) == 4
    assert len(time.sleeps) == 3


async def test_gives_up_after_the_configured_retries_and_says_why() -> None:
    time = FakeClock()
    calls, operation = failing(10, Flaky())
    with pytest.raises(Flaky) as caught:
        await policy(time).call(operation, is_retryable=lambda e: isinstance(e, Flaky))
    assert len(calls) == 4
    assert any("3 retries used" in note for note in caught.value.__notes__)


async def test_final_errors_are_never_retried() -> None:
    time = FakeClock()
    calls, operation = failing(1, Final())
    with pytest.raises(Final):
        await policy(time).call(operation, is_retryable=lambda e: isinstance(e, Flaky))
    assert len(calls) == 1
    assert time.sleeps == []


@given(retry_number=st.integers(0, 20), seed=st.integers(0, 2**32))
def test_full_jitter_stays_within_the_exponential_ceiling_and_the_cap(
    retry_number: int, seed: int
) -> None:
    config = RetryConfig(base_delay=1.0, max_delay=10.0)
    retry = RetryPolicy(config, rng=random.Random(seed))
    delay = retry.backoff(retry_number)
    assert 0 <= delay <= min(10.0, 2.0**retry_number)


def test_jitter_spreads_delays_instead_of_synchronised_waves() -> None:
    retry = RetryPolicy(RetryConfig(base_delay=1.0, max_delay=10.0), rng=random.Random(1))
    delays = {round(retry.backoff(3), 3) for _ in range(50)}
    assert len(delays) > 40


def test_retry_after_is_a_floor_but_still_capped() -> None:
    retry = RetryPolicy(RetryConfig(base_delay=0.01, max_delay=10.0), rng=random.Random(1))
    assert retry.backoff(0, retry_after=5.0) == 5.0
    assert retry.backoff(0, retry_after=60.0) == 10.0


async def test_retry_after_from_the_error_is_honoured() -> None:
    time = FakeClock()
    _calls, operation = failing(1, Flaky(retry_after=4.0))
    await policy(time, base_delay=0.001).call(
        operation,
        is_retryable=lambda e: isinstance(e, Flaky),
        retry_after=lambda e: e.retry_after if isinstance(e, Flaky) else None,
    )
    assert time.sleeps == [4.0]


async def test_deadline_stops_retrying_before_the_wait_would_pass_it() -> None:
    time = FakeClock()
    calls, operation = failing(10, Flaky(retry_after=8.0))
    with pytest.raises(Flaky) as caught:
        await policy(time, deadline=20.0, retries=10).call(
            operation,
            is_retryable=lambda e: isinstance(e, Flaky),
            retry_after=lambda _e: 8.0,
        )
    assert len(calls) == 3  # waits 8 + 8 = 16 s; a third wait would end at 24 s > 20 s
    assert any("deadline" in note for note in caught.value.__notes__)


def test_budget_allows_a_minimum_then_a_ratio_of_recent_calls() -> None:
    time = FakeClock()
    budget = RetryBudget(ratio=0.2, min_retries=2, window=10, clock=time.monotonic)
    for _ in range(5):
        budget.record_call()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    for _ in range(95):
        budget.record_call()  # 100 calls -> 20 retries allowed in the window
    assert sum(budget.try_spend() for _ in range(30)) == 18
    time.advance(11)  # the window rolls past every recorded call and retry
    assert budget.snapshot() == {"calls": 0, "retries": 0, "allowed": 2}
    assert budget.try_spend()


async def test_a_dead_gateway_gets_at_most_the_budgeted_extra_traffic() -> None:
    time = FakeClock()
    retry = policy(time, budget_ratio=0.2, budget_min_retries=0, retries=3, base_delay=0.0)
    attempts = 0

    async def dead() -> None:
        nonlocal attempts
        attempts += 1
        raise Flaky

    for _ in range(100):
        with pytest.raises(Flaky):
            await retry.call(dead, is_retryable=lambda e: isinstance(e, Flaky))
    # without a budget: 400 attempts; with it, 100 first attempts plus at most 20 %
    assert attempts <= 120
