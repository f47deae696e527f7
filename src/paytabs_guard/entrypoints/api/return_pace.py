"""The crowd an outage turned away comes back oldest first, at a pace the service can take.

While a circuit is open every create is told the same truth: come back when the next probe has
answered. When PayTabs returns, every merchant turned away during the outage comes back within a
few hundred milliseconds, and the requests held for ``Prefer: wait`` are woken together. A worker
that serves a few hundred creates at once shares its CPU between all of them, so all of them
finish late, seconds after the recovery: the oldest orders, whose merchants give up first, no
sooner than the newest. The first chaos runs lost their sales to exactly that surge.

:class:`ReturnPace` orders the return instead, at ``rate`` creates per second per worker:

- **turned-away creates keep their place in line.** The first 503 a (client, Idempotency-Key)
  gets puts it at the back of the line; every later 503 tells it to come back ``rank / rate``
  seconds after the truth, where ``rank`` is the number of creates turned away before it that
  are still waiting. The oldest comes back first, the newest last, about one slot apart, so the
  service takes them as they arrive instead of all at once. A create leaves the line once it is
  answered; one that does not come back by its time (its merchant gave up) drops out.
- **held requests are released in the order they were held**, one per slot.

The newest orders wait longest, and they are the ones with the most of their budget left. A
worker only knows its own line; each worker paces its own crowd. Memory is bounded: beyond
``capacity`` waiting creates, a newcomer gets the plain random spread and no place.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

Who = tuple[str, str]
"""A turned-away create: (client id, Idempotency-Key)."""

RETURN_GRACE: Final = 1.0
"""Seconds past its time after which a create that did not come back leaves the line."""


@dataclass(slots=True)
class _Place:
    ticket: int
    back_by: float


class ReturnPace:
    """The line of turned-away creates and the release of held requests of one worker.

    Args:
        rate: Creates per second to send back or release; 0 turns pacing off (``line_wait`` is
            always None, ``release`` never waits).
        capacity: The longest line kept; newcomers beyond it get no place.
        clock: Monotonic seconds.
        sleep: Waits that many seconds (tests pass one that moves their clock).
    """

    def __init__(
        self,
        rate: float,
        *,
        capacity: int = 5000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate!r}")
        self.slot = 1.0 / rate if rate > 0 else 0.0
        self._capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._line: OrderedDict[Who, _Place] = OrderedDict()
        self._tickets = 0
        self._next_release = 0.0

    @property
    def enabled(self) -> bool:
        return self.slot > 0.0

    def __len__(self) -> int:
        return len(self._line)

    # -- the line of turned-away creates -------------------------------------------------------

    def line_wait(self, who: Who, wait: float) -> float | None:
        """Seconds to add to ``wait`` for ``who``, turned away now and told to come back in
        ``wait`` seconds: its place in line times the slot, plus a fraction of a slot at random
        so that neighbours do not collide. Joins the line at the back if new. None when pacing
        is off or the line is full (the caller spreads as it would without a line)."""
        if not self.enabled:
            return None
        now = self._clock()
        self._drop_gone(now)
        place = self._line.get(who)
        if place is None:
            if len(self._line) >= self._capacity:
                return None
            place = self._line[who] = _Place(self._tickets, 0.0)
            self._tickets += 1
        # Tickets count everyone who joined; those who left from the middle of the line (an
        # answer came early) still count here. Leaving happens mostly in arrival order, so the
        # rank is close, and never smaller than the true one: no one is sent back too early.
        head = next(iter(self._line.values())).ticket
        extra = (place.ticket - head) * self.slot + self._rng.uniform(0.0, self.slot)
        place.back_by = now + wait + extra + RETURN_GRACE
        return extra

    def leave(self, who: Who) -> None:
        """``who`` was answered (or its key cannot be answered): it no longer waits."""
        self._line.pop(who, None)

    def _drop_gone(self, now: float) -> None:
        # Only the head is looked at: merchants give up oldest first (their budgets end in the
        # order their orders arrived), so the gone gather at the front.
        line = self._line
        while line:
            who, place = next(iter(line.items()))
            if place.back_by >= now:
                return
            del line[who]

    # -- held requests -------------------------------------------------------------------------

    async def release(self) -> None:
        """Return when it is this held request's turn to go on: at once if no other was released
        in the last slot, else one slot after the one before it (in the order of the calls)."""
        if not self.enabled:
            return
        now = self._clock()
        turn = max(now, self._next_release)
        self._next_release = turn + self.slot
        if turn > now:
            await self._sleep(turn - now)
