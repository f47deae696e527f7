"""What one running app holds besides the container: options, keys, caches, background work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from paytabs_guard.bootstrap import Container
from paytabs_guard.entrypoints.health_checks import ProbeResult
from paytabs_guard.observability import get_logger

from .auth import ApiKeys
from .key_guesses import KeyGuesses
from .options import ApiOptions
from .prefer_wait import Holding
from .rate_limit import FailureLimiter
from .return_pace import ReturnPace
from .sync import SyncGate
from .webhook_receiver import WebhookReceiver

log = get_logger(__name__)
T = TypeVar("T")


class Background:
    """Tasks started by requests that must outlive them (a PayTabs query after a timeout);
    shutdown waits for them, so a query that got its answer also gets it applied."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed", task=task.get_name(),
                        error=type(task.exception()).__name__)  # fmt: skip

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace_seconds: float) -> None:
        """Wait up to ``grace_seconds`` for the running tasks, then cancel the rest."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace_seconds)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(BaseException):
                await task


@dataclass
class TtlCache(Generic[T]):
    """A tiny in-process cache: one value per key for ``ttl`` seconds (monotonic clock)."""

    ttl: float
    clock: Callable[[], float] = time.monotonic
    _items: dict[str, tuple[float, T]] = field(default_factory=dict)
    _making: dict[str, asyncio.Task[T]] = field(default_factory=dict)

    def get(self, key: str) -> T | None:
        item = self._items.get(key)
        if item is None or item[0] <= self.clock():
            return None
        return item[1]

    def put(self, key: str, value: T) -> None:
        self._items[key] = (self.clock() + self.ttl, value)

    async def shared(self, key: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """The cached value, else the one ``make`` is already computing, else a new one.

        Callers that arrive while a value is being made wait for that one instead of making
        their own: fifty health checks at once are one PayTabs query, not fifty. The making
        runs as its own task, so a caller that leaves does not cancel it for the rest."""
        cached = self.get(key)
        if cached is not None:
            return cached
        task = self._making.get(key)
        if task is None:
            task = asyncio.create_task(make())
            self._making[key] = task

            def done(finished: asyncio.Task[T]) -> None:
                if self._making.get(key) is finished:
                    del self._making[key]
                if not finished.cancelled() and finished.exception() is None:
                    self.put(key, finished.result())

            task.add_done_callback(done)
        return await asyncio.shield(task)


@dataclass
class Runtime:
    """The app's state (``app.state.runtime``), built when the container is ready."""

    container: Container
    options: ApiOptions
    api_keys: ApiKeys
    limiter: FailureLimiter
    sign_in_limiter: FailureLimiter
    key_guesses: KeyGuesses
    webhook: WebhookReceiver
    probe_cache: TtlCache[ProbeResult]
    stats_cache: TtlCache[str]
    holding: Holding
    pace: ReturnPace
    sync_gate: SyncGate
    background: Background = field(default_factory=Background)
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, container: Container, options: ApiOptions) -> Runtime:
        settings = container.settings
        limiter = FailureLimiter(options.failed_verifications, options.failure_window_seconds)
        pace = ReturnPace(settings.circuit_breaker_return_rate)
        holding = Holding(settings.prefer_wait_max_seconds, settings.prefer_wait_max_held, pace)
        container.metrics.watch_returns(
            lambda: len(pace), lambda: pace.waiting, lambda: holding.held
        )
        return cls(
            container=container,
            options=options,
            api_keys=ApiKeys(
                settings.api_keys, settings.admin_api_keys, pepper=settings.paytabs_server_key
            ),
            limiter=limiter,
            sign_in_limiter=FailureLimiter(options.failed_sign_ins, options.sign_in_window_seconds),
            key_guesses=KeyGuesses(options.failed_api_keys, options.api_key_window_seconds),
            webhook=WebhookReceiver(
                container, limiter, body_read_seconds=options.body_read_seconds
            ),
            probe_cache=TtlCache(options.paytabs_probe_cache_seconds),
            stats_cache=TtlCache(float(settings.stats_cache_seconds)),
            holding=holding,
            pace=pace,
            sync_gate=SyncGate(options.sync_min_interval_seconds),
        )
