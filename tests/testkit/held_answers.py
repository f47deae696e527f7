"""PayTabs holding its answers until the test lets them go.

A test that needs a request to be "at PayTabs" while something else happens used to set a
latency fault (400 ms, 1.5 s, 3 s) and race it: on a loaded machine the window closed before
the other thing happened, and the test failed for want of time, not for a defect. Here the
simulator's latency pause waits for :meth:`HeldAnswers.release` instead of a clock, so the
request stays at PayTabs exactly as long as the test needs, and the test waits for events
(:meth:`HeldAnswers.arrived`) rather than for time to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Final

from paytabs_simulator.engine import Engine
from paytabs_simulator.faults import DEFAULT_FAULT_PATHS, Faults

WAIT: Final = 10.0  # seconds a test waits for a request to reach PayTabs before it fails


class Arrivals:
    """A count of arrivals a test can wait for (:meth:`reached`) instead of polling."""

    def __init__(self) -> None:
        self.count = 0
        self._arrival = asyncio.Event()

    def arrive(self) -> None:
        self.count += 1
        self._arrival.set()

    async def reached(self, count: int, within: float = WAIT) -> None:
        """Return once ``count`` arrivals in all are in (bounded: a test fails rather than
        hangs when they never come)."""
        async with asyncio.timeout(within):
            while self.count < count:
                self._arrival.clear()
                await self._arrival.wait()


class HeldAnswers:
    """Counts the requests PayTabs holds (:attr:`count`); :meth:`release` lets them all go,
    those already held and any that arrive later."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._arrivals = Arrivals()
        self._go = asyncio.Event()

    @property
    def count(self) -> int:
        """The requests PayTabs has held so far."""
        return self._arrivals.count

    async def pause(self, seconds: float) -> None:
        """The simulator's latency pause: held until released (or the simulator stops)."""
        del seconds  # no clock: the test decides when PayTabs answers
        self._arrivals.arrive()
        go = asyncio.ensure_future(self._go.wait())
        closing = asyncio.ensure_future(self.engine.closing.wait())
        try:
            await asyncio.wait({go, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            go.cancel()
            closing.cancel()

    async def arrived(self, count: int = 1, within: float = WAIT) -> None:
        """Return once ``count`` requests in all have reached PayTabs (bounded: a test fails
        rather than hangs when they never come)."""
        await self._arrivals.reached(count, within)

    def release(self) -> None:
        """PayTabs answers: every held request goes on, and none is held from now on."""
        self._go.set()


@contextlib.contextmanager
def held_answers(engine: Engine, fault_paths: list[str] | None = None) -> Iterator[HeldAnswers]:
    """Hold every request to ``fault_paths`` (the gateway's, by default) until released.
    On leaving, the held ones are let go and the faults and the pause are restored."""
    held = HeldAnswers(engine)
    before = engine.faults
    paths = list(DEFAULT_FAULT_PATHS) if fault_paths is None else fault_paths
    # Any latency makes the simulator pause; the pause, not the number, decides how long.
    engine.set_faults(Faults(latency_ms=1, fault_paths=paths))
    engine.pause = held.pause  # type: ignore[method-assign]
    try:
        yield held
    finally:
        held.release()
        del engine.pause
        engine.set_faults(before)
