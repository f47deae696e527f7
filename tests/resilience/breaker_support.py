"""Helpers shared by the circuit breaker tests: a gated coroutine, failures, a recorder."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from typing import Any

from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerEvent,
    CircuitBreaker,
    CircuitOpenError,
    ManualClock,
)

# The seed's settings, in seconds, with the call timeout off: timeouts have their own tests and
# need a running clock.
SEED = BreakerConfig(call_timeout=None)


class Boom(Exception):
    """A failure of the gateway (counts against the breaker)."""


class Declined(Exception):
    """An answer from a healthy gateway (the predicate excuses it)."""


def only_booms(error: Exception) -> bool:
    return not isinstance(error, Declined)


def make_breaker(
    clock: ManualClock,
    name: str = "create",
    config: BreakerConfig = SEED,
    *,
    rng: random.Random | None = None,
    **changes: Any,
) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        replace(config, **changes) if changes else config,
        clock=clock,
        wall_clock=clock.wall,
        rng=rng,
    )


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise Boom("gateway down")


async def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert await breaker.call(ok) == "ok"


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    """Failing calls; once the breaker opens, the rest are rejections."""
    for _ in range(times):
        with contextlib.suppress(Boom, CircuitOpenError):
            await breaker.call(boom)


async def trip(breaker: CircuitBreaker) -> None:
    """Open a breaker built from ``SEED`` (volume 5, 50 %)."""
    await fail(breaker, breaker.config.volume_threshold)
    assert breaker.state == "open"


class Gate:
    """A coroutine function whose calls wait until released, counting who got in; released,
    each call returns ``answer``, or raises ``error`` when one is given."""

    def __init__(self, answer: str = "ok", error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.entered = 0
        self.running = 0
        self.max_running = 0
        self.cancelled = 0
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()

    async def __call__(self) -> str:
        self.entered += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.arrived.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        if self.error is not None:
            raise self.error
        return self.answer


class Recorder:
    """A subscriber that keeps every event."""

    def __init__(self) -> None:
        self.events: list[BreakerEvent] = []

    def __call__(self, event: BreakerEvent) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [event.type.value.removeprefix("circuit_breaker.") for event in self.events]


async def settle() -> None:
    """Let every task that is ready run until it blocks (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)
