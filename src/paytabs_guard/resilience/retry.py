"""The retry policy: exponential backoff with full jitter, a cap, a deadline, and a retry budget.

This is the only retry layer around PayTabs. It never decides *what* may be retried: the caller
passes a predicate (PayTabs' adapter says: only failures where the request provably never took
effect). It decides *whether there is still room* to retry: attempts left, time left before the
deadline, and budget left so that a dead gateway never sees several times the normal traffic.

Why not stamina or tenacity: both sleep on the real clock (tests need an injected one), neither
has a retry budget shared across calls, and the PayTabs adapter must run a status query between
two attempts, which fits a small explicit loop better than a decorator.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How much retrying one operation may do. Times in seconds."""

    retries: int = 3  # after the first attempt: 3 means at most 4 attempts
    base_delay: float = 1.0
    max_delay: float = 10.0
    deadline: float = 60.0  # no retry starts after it; an attempt under way runs to its timeout
    budget_ratio: float = 0.2  # retries may add at most 20 % to the calls of the window ...
    budget_min_retries: int = 10  # ... but a quiet service may always retry this many
    budget_window: float = 10.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base_delay < 0 or self.max_delay <= 0 or self.deadline <= 0:
            raise ValueError("retries and delays must not be negative; deadline > 0")
        if not 0 <= self.budget_ratio <= 1:
            raise ValueError("budget_ratio must be between 0 and 1")


class RetryBudget:
    """Retries allowed as a fraction of recent calls (Finagle/Linkerd style), shared by callers.

    One-second buckets over ``window`` seconds, rotated lazily from the clock: O(1) per call.
    """

    __slots__ = ("_buckets", "_calls", "_clock", "_min", "_ratio", "_retries", "_width")

    def __init__(self, ratio: float, min_retries: int, window: float, clock: Clock) -> None:
        self._ratio = ratio
        self._min = min_retries
        self._clock = clock
        self._width = max(1, math.ceil(window))
        self._buckets: list[int] = [-1] * self._width  # which second each slot holds
        self._calls = [0] * self._width
        self._retries = [0] * self._width

    def _slot(self) -> int:
        second = int(self._clock())
        index = second % self._width
        if self._buckets[index] != second:
            self._buckets[index] = second
            self._calls[index] = 0
            self._retries[index] = 0
        return index

    def _window_sums(self) -> tuple[int, int]:
        oldest = int(self._clock()) - self._width + 1
        calls = retries = 0
        for index, second in enumerate(self._buckets):
            if second >= oldest:
                calls += self._calls[index]
                retries += self._retries[index]
        return calls, retries

    def record_call(self) -> None:
        """A first attempt was made."""
        self._calls[self._slot()] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when the budget is used up."""
        index = self._slot()
        calls, retries = self._window_sums()
        if retries >= max(self._min, int(calls * self._ratio)):
            return False
        self._retries[index] += 1
        return True

    def snapshot(self) -> dict[str, int]:
        calls, retries = self._window_sums()
        return {
            "calls": calls,
            "retries": retries,
            "allowed": max(self._min, int(calls * self._ratio)),
        }


class RetryPolicy:
    """Backoff, deadline and budget for one kind of operation; the loop itself is ``call``."""

    def __init__(
        self,
        config: RetryConfig,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self._rng = rng or random.Random()
        self.budget = budget or RetryBudget(
            config.budget_ratio, config.budget_min_retries, config.budget_window, clock
        )

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        """Full jitter U(0, min(cap, base * 2^n)), raised to ``retry_after`` if the server asks."""
        ceiling = min(self.config.max_delay, self.config.base_delay * (2**retry_number))
        delay = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_delay))
        return delay

    def start(self) -> Attempts:
        """Book-keeping for one operation: call ``next_delay`` after each retryable failure."""
        self.budget.record_call()
        return Attempts(self, self.clock() + self.config.deadline)

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None] = lambda _error: None,
    ) -> T:
        """Run ``operation`` until it succeeds, fails for good, or a limit is reached.

        The last failure is re-raised unchanged (its ``__notes__`` say why retrying stopped).
        """
        attempts = self.start()
        while True:
            try:
                return await operation()
            except Exception as error:
                if not is_retryable(error):
                    raise
                delay = attempts.next_delay(retry_after(error))
                if delay is None:
                    error.add_note(f"retry stopped: {attempts.stop_reason}")
                    raise
                await self.sleep(delay)


class Attempts:
    """The retry state of one operation: how many retries were used and when it must end."""

    __slots__ = ("_deadline", "_policy", "retries_used", "stop_reason")

    def __init__(self, policy: RetryPolicy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self.retries_used = 0
        self.stop_reason = ""

    def remaining(self) -> float:
        return self._deadline - self._policy.clock()

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """The wait before the next attempt, or None when a limit says stop (see stop_reason)."""
        if self.retries_used >= self._policy.config.retries:
            self.stop_reason = f"{self._policy.config.retries} retries used"
            return None
        delay = self._policy.backoff(self.retries_used, retry_after)
        if delay >= self.remaining():
            self.stop_reason = "deadline reached"
            return None
        if not self._policy.budget.try_spend():
            self.stop_reason = "retry budget used up"
            return None
        self.retries_used += 1
        return delay

    async def wait(self, delay: float) -> None:
        await self._policy.sleep(delay)
