"""Callers waiting for a breaker to admit again (``Prefer: wait``), without polling.

A waiter sleeps on a future; the breaker resolves waiters when a state change lets calls
through (all of them on closing, as many as there are trial slots on half-open) or a trial
slot comes free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class AdmissionWaiters:
    """The futures of callers waiting for admission, oldest first."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._futures)

    async def wait(self, rejection_wait: Callable[[], float | None], max_wait: float) -> bool:
        """Wait until ``rejection_wait()`` says a call would be let through (None), at most
        ``max_wait`` seconds; it also bounds each sleep, so a due trial is never missed.
        Returns False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        futures = self._futures
        while (wait := rejection_wait()) is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            futures.append(waiter)
            try:
                async with asyncio.timeout(min(remaining, max(wait, 0.001))):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in futures:
                    futures.remove(waiter)
        return True

    def wake(self, count: int) -> None:
        """Resolve up to ``count`` waiters, oldest first."""
        futures = self._futures
        while count > 0 and futures:
            waiter = futures.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                count -= 1
