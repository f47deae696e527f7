"""A hand-driven pause for the serving reconciliation loop (``ReconciliationStatus.pause``).

The loop runs a pass, then pauses; in a test the pause never ends on its own. :meth:`resume`
lets the loop run its next pass and returns once that pass has finished (the loop paused
again), so a test sees each pass's effect without sleeping or polling.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Final

WAIT: Final = 10.0  # seconds a test waits for the loop before it fails (a pass takes far less)


class HandPause:
    """Counts the loop's passes (:attr:`passes`: each finished pass pauses once)."""

    def __init__(self) -> None:
        self.passes = 0
        self.intervals: list[timedelta] = []
        self._paused = asyncio.Event()
        self._go = asyncio.Event()

    async def __call__(self, stop: asyncio.Event, interval: timedelta) -> None:
        self.passes += 1
        self.intervals.append(interval)
        self._go = asyncio.Event()
        self._paused.set()
        go = asyncio.ensure_future(self._go.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({go, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            go.cancel()
            stopped.cancel()

    async def passed(self) -> None:
        """Return once the loop has finished a pass and paused (the first one after start)."""
        async with asyncio.timeout(WAIT):
            await self._paused.wait()

    async def resume(self) -> None:
        """Let the loop run one more pass; return when it has finished and paused again."""
        await self.passed()
        self._paused.clear()
        self._go.set()
        await self.passed()
