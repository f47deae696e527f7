"""A hand-driven ``sleep`` for the page-expiry sleeper (service and API tests)."""

from __future__ import annotations

import asyncio
from datetime import datetime

WAIT = 10.0  # seconds a test waits for the sleeper before it fails (it never takes that long)


class HandSleep:
    """The sleeper's ``sleep`` for tests: it never ends on its own. :meth:`look` wakes it and
    returns once it has looked at the deadlines again and gone back to sleep."""

    def __init__(self) -> None:
        self.asked: list[datetime | None] = []  # what each sleep was until
        self.asleep = asyncio.Event()
        self._wake: asyncio.Event | None = None

    async def __call__(self, until: datetime | None, wake: asyncio.Event) -> None:
        self.asked.append(until)
        self._wake = wake
        if wake.is_set():
            return  # woken while it looked: it looks again before really sleeping
        self.asleep.set()
        try:
            await wake.wait()
        finally:
            self.asleep.clear()

    async def look(self) -> None:
        self.asleep.clear()
        if self._wake is not None:
            self._wake.set()
        await self.next_sleep()

    async def next_sleep(self) -> None:
        """Return once it sleeps with nothing waking it (a sleep being woken does not count)."""
        if self._wake is not None and self._wake.is_set():
            self.asleep.clear()
        async with asyncio.timeout(WAIT):
            await self.asleep.wait()
