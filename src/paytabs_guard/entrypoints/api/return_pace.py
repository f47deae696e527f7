"""The crowd an outage turned away comes back oldest first, at a pace the service can take.

While a circuit is open every create is told the same truth: come back when the next probe has
answered. When PayTabs returns, every merchant turned away during the outage comes back within a
few hundred milliseconds, and the requests held for ``Prefer: wait`` are woken together. A worker
that serves a few hundred creates at once shares its CPU between all of them, so all of them
finish late, seconds after the recovery: the oldest orders, whose merchants give up first, no
sooner than the newest. The first chaos runs lost their sales to exactly that surge.

:class:`ReturnPace` orders the return instead, at ``rate`` creates per second per worker:

- **turned-away creates keep their place in line.** The first 503 a (merchant, Idempotency-Key)
  gets puts it at the back of the line; every later 503 tells it to come back ``rank / rate``
  seconds after the truth, where ``rank`` is the number of creates turned away before it that
  are still waiting. The oldest come back first, the newest last. (Telling them to come back
  faster, ahead of their turns, was measured: the same sales, three times the fail-fast p99
  during the outage.) A request held for ``Prefer: wait`` takes its place when it starts to
  wait. A create leaves the line once it is answered; one that does not come back by its time
  (its merchant gave up) drops out.
- **while anyone is in line, creates take turns** (:meth:`ReturnPace.turn`): one starts every
  slot (``1 / rate`` s), the lowest place in line first, a create without a place after all
  those with one. Merchants do not come back in perfect order (each comes back on its own
  cycle), and held requests are woken together; the turns are what keeps the oldest first and
  the service's CPU on a few creates at a time. Waiting for a turn costs no CPU. With nobody in
  line (no outage lately) a create never waits.

The newest orders wait longest, and they are the ones with the most of their budget left. A
worker only knows its own line; each worker paces its own crowd. Memory is bounded: beyond
``capacity`` waiting creates, a newcomer gets the plain random spread and no place.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

Who = tuple[str, str]
"""A turned-away create: (the scope of its key, its Idempotency-Key)."""

TURN_SECONDS: Final = 0.2
"""While a crowd is in line, at most ``rate * TURN_SECONDS`` creates that got a turn run at once
(10 at 50 a second): creates that take up to 200 ms (a PayTabs round trip and the worker's own
work) keep the pace; slower ones, a busy worker or a slow gateway, slow the turns down with
them, so a returning crowd never piles more work on a worker than it gets done."""
HUNG_AFTER: Final = 5.0
"""Seconds after which a create that got a turn no longer counts as running: it waits on a
PayTabs that does not answer, not on the worker (``CIRCUIT_BREAKER_STALL_AFTER``'s default, the
breaker's own "calls that waited this long unanswered are hung"). Counted until their call
timeout instead, a handful of creates sent into a hang stopped every create for up to 27 s,
long after PayTabs answered again."""
RETURN_GRACE: Final = 1.0
"""Seconds past its time after which a create that did not come back leaves the line."""


@dataclass(slots=True)
class _Place:
    ticket: int
    back_by: float


class ReturnPace:
    """The line of turned-away creates and the turns of one worker.

    Args:
        rate: Creates per second to send back or start; 0 turns pacing off (``line_wait`` is
            always None, ``turn`` never waits).
        capacity: The longest line kept; newcomers beyond it get no place.
        clock: Monotonic seconds.
        sleep: Waits that many seconds (tests pass one that moves their clock).
        hung_after: Seconds after which a create that got a turn no longer counts as
            running (:data:`HUNG_AFTER`); None: it counts until it ends.
    """

    def __init__(
        self,
        rate: float,
        *,
        capacity: int = 5000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        hung_after: float | None = HUNG_AFTER,
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
        self._order = itertools.count()
        self._turns: list[tuple[int, int, asyncio.Future[int]]] = []
        self._next_turn = 0.0
        self._dispatcher: asyncio.Task[None] | None = None
        self.in_progress = max(1, math.ceil(rate * TURN_SECONDS))
        # The creates that got a turn and still count as running: when each started.
        self._running: dict[int, float] = {}
        self._hung_after = hung_after
        self._room = asyncio.Event()

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
        place = self._place_of(who)
        if place is None:
            return None
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

    def join(self, who: Who, stay: float) -> None:
        """``who`` waits in the service (held for ``Prefer: wait``) for up to ``stay`` seconds:
        it takes a place in line now, or keeps the one it has."""
        if not self.enabled:
            return
        place = self._place_of(who)
        if place is not None:
            place.back_by = max(place.back_by, self._clock() + stay + RETURN_GRACE)

    def _place_of(self, who: Who) -> _Place | None:
        """``who``'s place, a new one at the back if it has none; None when the line is full."""
        place = self._line.get(who)
        if place is None:
            if len(self._line) >= self._capacity:
                return None
            place = self._line[who] = _Place(self._tickets, 0.0)
            self._tickets += 1
        return place

    # -- turns -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self, who: Who | None) -> AsyncIterator[bool]:
        """Hold this create until its turn to start and count it in progress until the block
        ends. Yields whether it waited: not when nobody is in line, nor when nobody waits, the
        last turn is a slot old and fewer than ``in_progress`` creates are running."""
        waited, counted = await self._take_turn(who)
        try:
            yield waited
        finally:
            if counted is not None and self._running.pop(counted, None) is not None:
                self._room.set()

    async def _take_turn(self, who: Who | None) -> tuple[bool, int | None]:
        """Whether the create waited, and its token among the running (None: not counted)."""
        if not self.enabled:
            return False, None
        now = self._clock()
        self._drop_gone(now)
        if not self._line and not self._turns:
            return False, None  # no returning crowd: no turns
        if not self._turns and now >= self._next_turn and self._busy(now) < self.in_progress:
            self._next_turn = now + self.slot
            return False, self._start(now)
        place = None if who is None else self._line.get(who)
        rank = place.ticket if place is not None else self._tickets  # no place: after them all
        turn: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._turns, (rank, next(self._order), turn))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        try:
            token = await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                # given a turn in the moment it was cancelled: give it back
                self._running.pop(turn.result(), None)
                self._room.set()
            turn.cancel()  # a request cancelled while waiting leaves its turn to the next one
            raise
        return True, token

    def _start(self, now: float) -> int:
        token = next(self._order)
        self._running[token] = now
        return token

    def _busy(self, now: float) -> int:
        """Creates that got a turn and count as running: those running past ``hung_after``
        wait on PayTabs, not on this worker, and are let go of (the oldest come first)."""
        running = self._running
        if self._hung_after is not None:
            while running:
                token, started = next(iter(running.items()))
                if now - started < self._hung_after:
                    break
                del running[token]
        return len(running)

    async def _dispatch(self) -> None:
        """Give the turns out, the lowest place first: one per slot, and only while fewer
        than ``in_progress`` creates that got a turn are running."""
        turns = self._turns
        while turns:
            if turns[0][2].done():
                heapq.heappop(turns)  # its request went away
                continue
            now = self._clock()
            if self._busy(now) >= self.in_progress:
                await self._until_room(now)
                continue
            if now < self._next_turn:
                await self._sleep(self._next_turn - now)
                continue
            _, _, turn = heapq.heappop(turns)
            if turn.done():
                continue
            turn.set_result(self._start(now))
            self._next_turn = max(now, self._next_turn) + self.slot

    async def _until_room(self, now: float) -> None:
        """Sleep until a running create ends, or until the oldest one counts as hung."""
        self._room.clear()
        if self._hung_after is None:
            await self._room.wait()
            return
        oldest = next(iter(self._running.values()))
        room = asyncio.ensure_future(self._room.wait())
        nap = asyncio.ensure_future(self._sleep(max(oldest + self._hung_after - now, 0.0)))
        try:
            await asyncio.wait((room, nap), return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            nap.cancel()

    @property
    def waiting(self) -> int:
        """Creates waiting for their turn now."""
        return sum(1 for _, _, turn in self._turns if not turn.done())
