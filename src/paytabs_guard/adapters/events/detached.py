"""Drains the outbox relay stopped waiting for: a slow sink's deliveries go on in the
background while the next runs serve the other sinks (relay.py, "Order per payment")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Detached(Generic[T]):
    """The tasks still delivering to each sink after their run returned. ``ended`` is called
    as each one ends (the relay runs again: events may have queued for that sink)."""

    def __init__(self, ended: Callable[[], object]) -> None:
        self._ended = ended
        self._running: dict[str, set[asyncio.Task[T]]] = {}

    def add(self, sink: str, task: asyncio.Task[T]) -> None:
        running = self._running.setdefault(sink, set())
        running.add(task)

        def done(finished: asyncio.Task[T]) -> None:
            running.discard(finished)
            if not running:
                self._running.pop(sink, None)
            if not finished.cancelled() and finished.exception() is not None:
                logger.error("outbox relay: delivering to %s failed: %s", sink,
                             finished.exception())  # fmt: skip
            self._ended()

        task.add_done_callback(done)

    def count(self, sink: str) -> int:
        return len(self._running.get(sink, ()))

    def any(self) -> bool:
        return bool(self._running)

    async def settle(self) -> None:
        """Wait for the ones still going (stopping); cancelled with the caller."""
        running = [task for tasks in self._running.values() for task in tasks]
        if not running:
            return
        try:
            await asyncio.wait(running)
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.wait(running)  # each gives its claims back as it ends
            raise


async def first_of(*events: asyncio.Event, wait_seconds: float) -> None:
    """Return when any of ``events`` is set or ``wait_seconds`` have passed."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
