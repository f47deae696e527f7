"""Callers waiting for a breaker to admit again (``Prefer: wait``), without polling.

A waiter sleeps on a future; the breaker resolves waiters when a state change lets calls
through (all of them on closing, as many as there are trial slots on half-open) or a trial
slot comes free. Waiters are woken oldest first, and a caller keeps its place for its whole
wait: each sleep is bounded (so a due trial is never missed), and a caller that wakes from
one and sleeps again goes back to where it stood, not to the back. Sent to the back, the first
held would be woken last after every bounded sleep, and a crowd released after a long outage
would go on in an order that has nothing to do with who waited longest.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable


class AdmissionWaiters:
    """The futures of callers waiting for admission, in the order the callers came."""

    __slots__ = ("_futures", "_order")

    def __init__(self) -> None:
        # (when the caller started to wait, its future), sorted: the oldest caller first.
        self._futures: list[tuple[int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._futures)

    async def wait(self, rejection_wait: Callable[[], float | None], max_wait: float) -> bool:
        """Wait until ``rejection_wait()`` says a call would be let through (None), at most
        ``max_wait`` seconds; it also bounds each sleep, so a due trial is never missed.
        Returns False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        futures = self._futures
        place = next(self._order)
        while (wait := rejection_wait()) is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (place, waiter)
            bisect.insort(futures, entry, key=_place)
            try:
                async with asyncio.timeout(min(remaining, max(wait, 0.001))):
                    await waiter
            except TimeoutError:
                pass
            finally:
                _discard(futures, entry)  # (woken, it was taken off already)
        return True

    def wake(self, count: int) -> None:
        """Resolve up to ``count`` waiters, oldest first."""
        futures = self._futures
        while count > 0 and futures:
            _, waiter = futures.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                count -= 1


def _place(entry: tuple[int, asyncio.Future[None]]) -> int:
    return entry[0]


def _discard(
    futures: list[tuple[int, asyncio.Future[None]]], entry: tuple[int, asyncio.Future[None]]
) -> None:
    """Remove ``entry`` if it is still there (found by its place: the list is sorted by it)."""
    index = bisect.bisect_left(futures, entry[0], key=_place)
    if index < len(futures) and futures[index] is entry:
        del futures[index]
