"""The one fake clock of the suite: time moves only when a test moves it.

The code under test takes its clocks as callables: an aware ``datetime`` for what it records
(``Callable[[], datetime]``) and, where it measures durations, monotonic seconds
(``Callable[[], float]``). One :class:`FakeClock` serves both, so a test that advances it moves
both readings together and never sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

START: Final = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
"""The default starting instant: fixed, so a failing test reproduces exactly."""

MONOTONIC_START: Final = 1000.0
"""The monotonic reading at ``start``: away from zero, so "no reading yet" bugs show."""


class FakeClock:
    """An aware UTC clock that moves only through :meth:`advance` or by setting :attr:`now`."""

    def __init__(self, start: datetime = START) -> None:
        if start.tzinfo is None:
            raise ValueError("the fake clock keeps aware time, like the code it drives")
        self._start = start
        self.now = start
        """The current instant; tests may jump it straight to a deadline."""
        self.sleeps: list[float] = []
        """Every :meth:`sleep` asked for, in order."""

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: float | timedelta) -> None:
        """Move forward by ``by`` (seconds or a ``timedelta``); going back is refused."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta(0):
            raise ValueError(f"time does not go back ({step})")
        self.now += step

    def monotonic(self) -> float:
        """Seconds on a monotonic scale that moves with :attr:`now` (``time.monotonic``'s shape)."""
        return MONOTONIC_START + (self.now - self._start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        """An injected ``asyncio.sleep``: returns at once, the clock having moved ``seconds``."""
        self.sleeps.append(seconds)
        self.advance(seconds)
