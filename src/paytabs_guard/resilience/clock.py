"""Clocks the breaker reads: a monotonic one for decisions and a wall clock for reports.

Everything that decides (buckets, open periods) uses the monotonic clock, so a wall-clock
jump (NTP, DST, a VM resume) can neither shorten an open period nor rotate the window.
The wall clock is only used to tell humans *when* something happened.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

MonotonicClock = Callable[[], float]
"""Seconds from an arbitrary origin that never goes backwards (``time.monotonic``)."""

WallClock = Callable[[], datetime]
"""Timezone-aware current time, used only for reporting."""


def utc_now() -> datetime:
    """The current time in UTC (the default wall clock)."""
    return datetime.now(UTC)


_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told to: for tests and simulations.

    Call the instance for monotonic seconds; :meth:`wall` gives a matching aware datetime, so
    one object can serve as both clocks of a breaker.
    """

    __slots__ = ("_now", "_wall_origin")

    def __init__(self, start: float = 1000.0, *, wall_origin: datetime = _EPOCH) -> None:
        self._now = start
        self._wall_origin = wall_origin - timedelta(seconds=start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (negative values are refused: clocks are monotonic)."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        self._now += seconds

    def set(self, now: float) -> None:
        """Jump to an absolute reading, which must not be earlier than the current one."""
        self.advance(now - self._now)

    def wall(self) -> datetime:
        """The wall-clock time matching the current monotonic reading."""
        return self._wall_origin + timedelta(seconds=self._now)
