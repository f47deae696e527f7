"""How the relay logs its failed runs: a run fails when its storage does (the database down,
a pool exhausted), and the relay tries again every second, so a ten-minute outage was 600
error lines with a traceback and the SQL in each, per worker.

The first failure of a streak is logged as before, with its traceback: that is the one to read.
While the runs keep failing, one short warning a minute says so (how many, the latest error's
first line); the first run that succeeds again says how many failed before it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

#: The longest the log stays silent about runs that keep failing.
REPEAT_EVERY: Final = timedelta(seconds=60)


class RunFailures:
    """The streak of failed runs of one relay, and its log lines."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], datetime]) -> None:
        self._logger = logger
        self._clock = clock
        self._streak = 0
        self._told_at: datetime | None = None

    def failed(self, error: Exception, interval: float) -> None:
        """Log a run that raised ``error`` (call it from the ``except`` block)."""
        self._streak += 1
        now = self._clock()
        if self._streak == 1:
            self._logger.exception("outbox relay run failed; next try in %.1f s", interval)
        elif self._told_at is not None and now - self._told_at < REPEAT_EVERY:
            return
        else:
            latest = (str(error).splitlines() or [""])[0]
            self._logger.warning(
                "outbox relay runs still failing: %d in a row, the latest %s: %s",
                self._streak,
                type(error).__name__,
                latest,
            )
        self._told_at = now

    def succeeded(self) -> None:
        """A run went through: end the streak, and say so if there was one."""
        if self._streak:
            self._logger.warning("outbox relay runs succeed again, after %d failed", self._streak)
        self._streak = 0
        self._told_at = None
