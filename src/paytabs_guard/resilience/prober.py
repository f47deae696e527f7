"""Recovery probes: while a breaker is open, ask the gateway something harmless, and listen.

A fixed open timer makes a breaker learn of a recovery late (up to the whole reset timeout) and
makes every breaker that opened together try again together. The prober replaces waiting with
looking: for each open breaker it sends, every ``probe_interval`` (jittered by the breaker), a
request that can have no effect — for PayTabs, a query for a cart id that cannot exist, which a
healthy gateway answers with "not found". Any answer the breaker's failure predicate excuses
proves the gateway answers, and :meth:`CircuitBreaker.record_probe` moves the breaker to
half-open at once; real trial calls then decide whether it closes.

Probes never enter the error-rate window. With shared state, one instance probes a breaker at a
time (a lease in Redis, renewed by each probe, taken over when its holder stops or dies) and
publishes each verdict to the others; with Redis unreachable every instance probes for itself.

A call turned away or held may bring a breaker's next probe forward (``ProbeBook.demanded``:
sales are waiting for the verdict); the prober hears of it through the breaker's
``probe_hurried`` event and wakes for the new time.

The core is :meth:`BreakerProber.tick` (send what is due, say when the next is due), which tests
drive with a manual clock; :meth:`BreakerProber.run` is the loop around it, which sleeps on an
event between ticks and wakes the moment a breaker opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from paytabs_guard.resilience.breaker import CircuitBreaker
from paytabs_guard.resilience.clock import MonotonicClock
from paytabs_guard.resilience.events import BreakerEvent, BreakerState, EventType
from paytabs_guard.resilience.probes import hurried_gap
from paytabs_guard.resilience.registry import BreakerRegistry

logger = logging.getLogger(__name__)

# Probes of one breaker in flight at once: enough for a new probe every hurried gap (a share of
# the interval, while sales wait) while older ones hang, never more than this. Fewer would hide
# a recovery from a gateway that hung: the probes sent into the hang hold every slot, and the
# first probe to see the recovery waits for one. Forty cover PROBE_PATIENCE at the hurried
# pace (a quarter second): with ten, the ten left within 2.5 s and then none for 7.5 s, and a
# recovery in that gap was seen 6 s late (a chaos run of a 40 s hang).
MAX_IN_FLIGHT = 40

# How long the oldest probe in flight is waited for before it gives way to a new one, when a
# probe is due and MAX_IN_FLIGHT are in flight. Without it a gateway that hung held all ten
# for the call timeout (27 s with the defaults), no probe left meanwhile, and a recovery was
# seen up to that late (an audit: 14-21 s). Twice the stall watch's 5 s: a gateway that answers
# in 6 s opens the breaker as stalled, and probes cut at 5 s would never see it answer (the
# breaker stayed open for the reset timeout); one slower than this is still found by the open
# period's own trial, which waits the whole call timeout.
PROBE_PATIENCE = 10.0

# Two readings of the planned look closer than this are the same plan (each adds a wait to
# its own clock reading); a probe brought forward moves by a share of an interval, far more.
_SAME_MOMENT = 0.001

ProbeFn = Callable[[], Awaitable[object]]
"""Sends one harmless request; returns or raises an exception the failure predicate excuses
when the gateway answered, raises anything else when it did not."""


class ProbeLease(Protocol):
    """Who probes a shared breaker right now (implemented by ``SharedBreakerState``)."""

    async def acquire_prober(self, name: str, ttl: float) -> bool:
        """Take or renew the probe lease of breaker ``name`` for ``ttl`` seconds.

        ``True`` when this instance should probe now: it holds the lease, or the lease store
        cannot be reached (then every instance probes for itself).
        """
        ...

    async def release_prober(self, name: str) -> None:
        """Give the lease up (on shutdown), so another instance takes over at once."""
        ...


class BreakerProber:
    """Sends the recovery probes of a registry's breakers.

    Args:
        registry: The breakers; only those named in ``probes`` and configured with a
            ``probe_interval`` are probed.
        probes: The probe request of each breaker family, by breaker name.
        timeout: Seconds a probe may take before it counts as "no answer".
        lease: Coordinates probing between instances; ``None`` probes locally.
        clock: The breakers' monotonic clock.
    """

    def __init__(
        self,
        registry: BreakerRegistry,
        probes: Mapping[str, ProbeFn],
        *,
        timeout: float,
        lease: ProbeLease | None = None,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self._registry = registry
        self._probes = dict(probes)
        self._timeout = timeout
        self._lease = lease
        self._clock = clock
        # Per breaker, its probes in flight and when each left (oldest first).
        self._flying: dict[str, dict[asyncio.Task[None], float]] = {}
        self._held: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._look_at = math.inf  # monotonic: when run() looks again unless woken
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = registry.subscribe(self._on_event)

    def _on_event(self, event: BreakerEvent) -> None:
        # Opened: probing starts. Half-opened by the open period's timer: probes resume if its
        # trials hang (CircuitBreaker._looking), so the next wait must be worked out again.
        if (event.type is EventType.OPENED and event.state is BreakerState.OPEN) or (
            event.type is EventType.HALF_OPENED
        ):
            self._wake.set()
        elif event.type is EventType.PROBE_HURRIED and event.breaker in self._probes:
            # A sale turned away or held brought the next probe forward (ProbeBook.demanded):
            # look then, not at the time planned before it.
            breaker = self._registry[event.breaker]
            wait = self._next_look(breaker)
            if wait is None:
                return
            look_at = self._clock() + wait
            if look_at < self._look_at - _SAME_MOMENT:
                self._look_at = look_at
                self._wake.set()

    def _probed(self) -> list[CircuitBreaker]:
        return [
            breaker
            for breaker in self._registry
            if breaker.name in self._probes and breaker.config.probe_interval is not None
        ]

    # -- the core: one pass --------------------------------------------------------------------

    async def tick(self) -> float | None:
        """Send every due probe (concurrently) and wait for their verdicts.

        Returns seconds until the prober should look again (the next probe due, or a
        half-open breaker's next check, ``next_look_in``), or ``None`` when no breaker is open
        or half-open.
        """
        started = self._start_due()
        if started:
            await asyncio.gather(*started)
        return self._next_wait()

    def _start_due(self) -> list[asyncio.Task[None]]:
        """Start a probe for every breaker whose probe is due; they run as tasks."""
        tasks = []
        for breaker in self._probed():
            # A probe that hangs does not hold the next one back, but no more than a few of
            # one breaker's probes are ever in flight: past that the oldest gives way.
            if breaker.probe_due() and (not self._saturated(breaker) or self._make_room(breaker)):
                breaker.probe_sent()
                task = asyncio.get_running_loop().create_task(self._probe(breaker))
                self._flying.setdefault(breaker.name, {})[task] = self._clock()
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
                tasks.append(task)
        return tasks

    def _limit(self, breaker: CircuitBreaker) -> int:
        interval = breaker.config.probe_interval or self._timeout
        return min(math.ceil(self._timeout / hurried_gap(interval)) + 1, MAX_IN_FLIGHT)

    def _saturated(self, breaker: CircuitBreaker) -> bool:
        return len(self._flying.get(breaker.name, ())) >= self._limit(breaker)

    def _make_room(self, breaker: CircuitBreaker) -> bool:
        """Give up the oldest probe in flight if it has waited ``PROBE_PATIENCE``: it counts as
        unanswered, as it would at its timeout. Returns whether there is room now."""
        flying = self._flying.get(breaker.name)
        if not flying:
            return True
        oldest, left_at = next(iter(flying.items()))
        if self._clock() - left_at < min(PROBE_PATIENCE, self._timeout):
            return False
        del flying[oldest]
        oldest.cancel()
        breaker.record_probe(succeeded=False)
        return not self._saturated(breaker)

    def _next_look(self, breaker: CircuitBreaker) -> float | None:
        """Seconds until ``breaker`` needs a look: its next probe, or for a saturated one the
        moment its oldest probe may give way (None: only a state change can make one due)."""
        wait = breaker.next_look_in()
        if wait is None or not self._saturated(breaker):
            return wait
        left_at = next(iter(self._flying[breaker.name].values()))
        patience = left_at + min(PROBE_PATIENCE, self._timeout) - self._clock()
        return max(wait, patience, 0.0)

    def _next_wait(self) -> float | None:
        # A saturated breaker looks again when its oldest probe may give way (the end of one
        # of its probes wakes the loop sooner).
        waits = [wait for b in self._probed() if (wait := self._next_look(b)) is not None]
        return min(waits) if waits else None

    async def _probe(self, breaker: CircuitBreaker) -> None:
        name = breaker.name
        try:
            if self._lease is not None:
                interval = breaker.config.probe_interval or 1.0
                # The lease outlives a few probe intervals: a holder that dies is replaced
                # within three intervals; one that stops cleanly releases it at once. Not the
                # probe's timeout on top: a holder renews it with every probe it sends, and
                # sends one each interval even while earlier ones hang, so only a holder that
                # stopped probing lets it lapse (a dead one, or one with its limit of probes
                # hanging; a second prober costs the gateway one probe an interval).
                if not await self._lease.acquire_prober(name, ttl=3 * interval):
                    self._held.discard(name)
                    breaker.skip_probe()
                    return
                self._held.add(name)
            started = self._clock()
            succeeded = await self._send(breaker)
            breaker.record_probe(succeeded=succeeded, latency=self._clock() - started)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._flying.get(name, {}).pop(task, None)  # (one given up is gone already)
            self._wake.set()

    async def _send(self, breaker: CircuitBreaker) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._probes[breaker.name]()
        except TimeoutError:
            return False
        except Exception as error:
            # The same judgement as for real calls: an answer that does not count against the
            # gateway ("not found", "invalid request") proves it answers.
            return not breaker.config.is_failure(error)
        return True

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick for ever: sleep until the next probe is due or a breaker opens."""
        while True:
            self._wake.clear()
            try:
                self._start_due()  # the probes answer in their own tasks
                wait = self._next_wait()
            except Exception:  # pragma: no cover - a bug in a probe function must not stop us
                logger.exception("breaker prober: a probe pass failed")
                wait = 1.0
            self._look_at = math.inf if wait is None else self._clock() + wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def start(self) -> None:
        """Start :meth:`run` as a task of the running loop (again, when the loop it ran on
        has ended: ``asyncio.run`` cancels it there, and a later loop needs one of its own)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        if self._task is not None and self._task.get_loop() is not loop:
            # What the ended loop left: its probes were cancelled with it, and its event
            # belongs to it (asyncio.Event.wait refuses another loop's).
            self._forget_other_loops(loop)
        self._task = loop.create_task(self.run(), name="breaker-prober")

    def _forget_other_loops(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._sending = {task for task in self._sending if task.get_loop() is loop}
        for flying in self._flying.values():
            for task in [task for task in flying if task.get_loop() is not loop]:
                del flying[task]

    async def aclose(self) -> None:
        """Stop probing and release the leases this instance holds. Tasks of a loop that has
        ended (a prober started under an earlier ``asyncio.run``) ended with it."""
        self._unsubscribe()
        loop = asyncio.get_running_loop()
        task, self._task = self._task, None
        every = self._sending | ({task} if task is not None else set())
        pending = {each for each in every if each.get_loop() is loop and not each.done()}
        for each in pending:
            each.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self._timeout + 1.0)
        if self._lease is not None:
            for name in sorted(self._held):
                with contextlib.suppress(Exception):
                    await self._lease.release_prober(name)
        self._held.clear()
