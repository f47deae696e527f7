"""A named set of breakers sharing one configuration: one per gateway operation family."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from paytabs_guard.resilience.breaker import CircuitBreaker, SharedHook
from paytabs_guard.resilience.clock import MonotonicClock, WallClock, utc_now
from paytabs_guard.resilience.config import BreakerConfig
from paytabs_guard.resilience.events import Subscriber
from paytabs_guard.resilience.stats import BreakerSnapshot


class SharedAttachable(SharedHook, Protocol):
    """A shared-state layer that also wants to know every breaker (to deliver remote state)."""

    def attach(self, breaker: CircuitBreaker) -> None:
        """Start relaying shared state to and from ``breaker``."""
        ...


class BreakerRegistry:
    """Get-or-create breakers by name, all with the same config, clocks and shared state.

    The stats and health endpoints iterate it or call :meth:`snapshot`. Subscribers added with
    :meth:`subscribe` receive the events of every breaker, present and future.
    """

    __slots__ = (
        "_breakers",
        "_clock",
        "_config",
        "_rng",
        "_shared",
        "_subscribers",
        "_wall_clock",
    )

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: MonotonicClock = time.monotonic,
        wall_clock: WallClock = utc_now,
        shared: SharedAttachable | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = BreakerConfig() if config is None else config
        self._rng = rng
        self._clock = clock
        self._wall_clock = wall_clock
        self._shared = shared
        self._breakers: dict[str, CircuitBreaker] = {}
        self._subscribers: list[Subscriber] = []

    @property
    def config(self) -> BreakerConfig:
        """The configuration every breaker of this registry is built with."""
        return self._config

    def get(self, name: str) -> CircuitBreaker:
        """The breaker called ``name``, created on first use."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(
                name,
                self._config,
                clock=self._clock,
                wall_clock=self._wall_clock,
                shared=self._shared,
                rng=self._rng,
            )
            for subscriber in self._subscribers:
                breaker.subscribe(subscriber)
            self._breakers[name] = breaker
            if self._shared is not None:
                self._shared.attach(breaker)
        return breaker

    def __getitem__(self, name: str) -> CircuitBreaker:
        """The existing breaker called ``name`` (``KeyError`` if there is none)."""
        return self._breakers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(tuple(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def names(self) -> list[str]:
        """Names of the breakers created so far, in creation order."""
        return list(self._breakers)

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """A snapshot of every breaker, by name."""
        return {name: breaker.snapshot() for name, breaker in tuple(self._breakers.items())}

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Deliver the events of every breaker, present and future; returns the unsubscriber."""
        self._subscribers.append(subscriber)
        for breaker in self._breakers.values():
            breaker.subscribe(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
            for breaker in self._breakers.values():
                breaker.unsubscribe(subscriber)

        return unsubscribe
