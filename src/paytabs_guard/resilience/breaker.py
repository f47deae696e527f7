"""The circuit breaker: a rolling error-rate window, lazy state changes, bounded half-open trials.

State machine::

    closed ──(a failure brings the error rate >= threshold, calls >= volume)──▶ open
    open ──(a recovery probe answered, or the open period elapsed)──▶ half_open
    half_open ──(half_open_max_calls trials succeeded, failed share under the threshold)──▶ closed
    half_open ──(failed share of the trials reached the threshold)──▶ open
    any ──force_open() / force_closed() / disable() / reset()──▶ forced_open / forced_closed /
                                                               disabled / closed

Rules worth knowing (see ``BreakerConfig`` for the knobs):

* Each attempted call is counted once, when it completes, in the bucket of its completion;
  rejected calls are counted as rejects, never in the error rate.
* The call timeout is inside the breaker: a call that outlives it is cancelled, counted as a
  failure and raised as :class:`CallTimeout`. A caller's own cancellation is neither a success
  nor a failure, and gives back a half-open trial slot.
* Exceptions the ``is_failure`` predicate excuses propagate unchanged but count as successes:
  the gateway answered, so it is healthy.
* Recovery is detected, not only waited for. While open, a recovery probe is due every
  ``probe_interval`` (jittered); a :class:`~paytabs_guard.resilience.prober.BreakerProber`
  sends it (a request that can have no effect) and reports with :meth:`record_probe`. An
  answer moves the breaker to half-open at once, and real trial calls decide; a probe whose
  "up" the trials contradicted loses credibility for a while (probes.py keeps that book).
* The open period is randomised (``open_jitter``) and adapts: ``min_open_time`` after a trip,
  doubled after each failed trial, never more than ``reset_timeout``.
* Nothing runs in the background and nothing awaits Redis: shared state arrives through
  :meth:`CircuitBreaker.apply_shared_open` / :meth:`~CircuitBreaker.apply_shared_close`, called
  by a listener, and leaves through the synchronous :class:`SharedHook`.

A breaker belongs to one event loop and is not thread-safe, like everything asyncio.

Why this module stays long: admission, outcomes, transitions and the reactions to probes,
shared state and manual commands all write the same few fields (state, ``_retry_at``, the trial
generation and counters) under one invariant, and the hot path inlines parts of them. Its
helpers with their own state live beside it: probes.py, waiters.py, window.py, deadline.py.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from paytabs_guard.resilience.clock import MonotonicClock, WallClock, utc_now
from paytabs_guard.resilience.config import BreakerConfig
from paytabs_guard.resilience.deadline import DeadlineTimer
from paytabs_guard.resilience.errors import CallTimeout, CircuitOpenError
from paytabs_guard.resilience.events import (
    STATE_EVENTS,
    BreakerEvent,
    BreakerState,
    EventType,
    Subscriber,
    deliver,
    error_type_name,
)
from paytabs_guard.resilience.probes import ProbeBook
from paytabs_guard.resilience.shared_hook import SharedHook
from paytabs_guard.resilience.stats import SHARING_DISABLED, BreakerSnapshot
from paytabs_guard.resilience.waiters import AdmissionWaiters
from paytabs_guard.resilience.window import RollingWindow

T = TypeVar("T")
P = ParamSpec("P")

Fallback = Callable[[BaseException], Awaitable[T]]
"""Called with the rejection or failure when a protected call cannot give a result."""

# Module-level aliases: a global load is cheaper than an enum attribute on the hot path.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_FORCED_CLOSED = BreakerState.FORCED_CLOSED
_DISABLED = BreakerState.DISABLED
_REJECTED = -1

__all__ = ["CircuitBreaker", "Fallback", "SharedHook"]  # SharedHook lives in shared_hook.py


class CircuitBreaker:
    """An asyncio circuit breaker for one family of gateway operations.

    Args:
        name: Identifies the breaker in errors, events, snapshots and shared keys.
        config: How it decides; the seed's defaults when omitted.
        clock: Monotonic seconds; inject a :class:`~paytabs_guard.resilience.ManualClock` in
            tests. The call timeout runs on the event loop's clock instead, since it must
            cancel a real task.
        wall_clock: Aware ``datetime`` for the "since" fields of snapshots and events.
        shared: The shared-state layer, if breaker state is shared between instances.
        rng: Source of the open period's and the probe schedule's jitter (seed it in tests).
    """

    __slots__ = (
        "_admit_all",
        "_call_timeout",
        "_cancelled",
        "_clock",
        "_config",
        "_failed_trials",
        "_generation",
        "_half_open_max",
        "_is_failure",
        "_jitter",
        "_min_open",
        "_opened",
        "_probe_interval",
        "_probes",
        "_reset_timeout",
        "_retry_at",
        "_rng",
        "_shared",
        "_since",
        "_since_wall",
        "_slow_failure_threshold",
        "_state",
        "_subscribers",
        "_threshold",
        "_timer",
        "_trial_failures",
        "_trial_patience",
        "_trial_successes",
        "_trials",
        "_volume",
        "_waiters",
        "_wall_clock",
        "_window",
        "name",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: MonotonicClock = time.monotonic,
        wall_clock: WallClock = utc_now,
        shared: SharedHook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        config = BreakerConfig() if config is None else config
        self.name = name
        self._config = config
        self._clock = clock
        self._wall_clock = wall_clock
        self._shared = shared
        self._subscribers: list[Subscriber] = []
        now = clock()
        self._window = RollingWindow(
            config.rolling_window,
            config.rolling_buckets,
            now=now,
            samples_per_bucket=config.latency_samples_per_bucket,
            slow_threshold=config.slow_call_threshold,
        )
        # Config copied into slots: the hot path reads them without a second attribute hop.
        self._threshold = config.error_threshold_percentage
        self._volume = config.volume_threshold
        self._half_open_max = config.half_open_max_calls
        self._reset_timeout = config.reset_timeout
        self._is_failure = config.is_failure
        self._call_timeout = config.call_timeout
        self._timer = None if config.call_timeout is None else DeadlineTimer(config.call_timeout)
        self._slow_failure_threshold = (
            config.slow_call_threshold
            if config.slow_call_is_failure and config.slow_call_threshold is not None
            else math.inf
        )
        # A trial still running after this long is presumed lost (it can only outlive the call
        # timeout if it swallows cancellation) and its slot is handed to a new trial.
        self._trial_patience = max(config.reset_timeout, config.call_timeout or 0.0)
        self._state = _CLOSED
        self._admit_all = True  # closed or forced_closed: the one check on the fast path
        self._since = now
        self._since_wall = wall_clock()
        self._retry_at = 0.0
        self._generation = 1  # bumped on every transition; a trial remembers its generation
        self._trials = 0  # trials admitted in this half-open period, minus abandoned ones
        self._trial_successes = 0
        self._cancelled = 0
        self._opened = 0
        self._trial_failures = 0
        self._failed_trials = 0  # consecutive half-open periods that ended open again
        self._min_open = config.min_open_time
        self._jitter = config.open_jitter
        self._probe_interval = config.probe_interval
        self._rng = rng if rng is not None else random.Random()
        self._probes = ProbeBook(config.probe_interval, config.open_jitter, self._rng)
        self._waiters = AdmissionWaiters()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"

    # -- properties ----------------------------------------------------------------------------

    @property
    def config(self) -> BreakerConfig:
        """The configuration this breaker was built with."""
        return self._config

    @property
    def state(self) -> BreakerState:
        """The current state, as of the last call or snapshot (transitions are lazy)."""
        return self._state

    # -- calls ---------------------------------------------------------------------------------

    async def call(
        self, fn: Callable[[], Awaitable[T]], *, fallback: Fallback[T] | None = None
    ) -> T:
        """Run ``fn()`` under the breaker and return its result.

        Raises:
            CircuitOpenError: The circuit is open, or half-open with every trial slot taken
                (only when no ``fallback`` is given).
            CallTimeout: ``fn`` outlived the call timeout and was cancelled (likewise).
            Exception: Whatever ``fn`` raised; failures go to ``fallback`` if given.

        ``fallback(error)`` is awaited instead of raising when the call is rejected or fails
        (a failure by the ``is_failure`` predicate, or a timeout); its result is returned and
        its exceptions propagate. Excused exceptions never reach the fallback.
        """
        clock = self._clock
        start = clock()
        timer = self._timer
        if self._admit_all:
            trial = 0
        elif self._state is _DISABLED:
            # Pass-through: no timeout, no fallback, no transitions; outcomes are still counted.
            trial = 0
            timer = None
            fallback = None
        else:
            if self._state is _OPEN and start < self._retry_at:
                if fallback is None and not self._subscribers:
                    # The reject of an open circuit, inlined: this path must stay cheap when a
                    # whole service's traffic hits a dead gateway. The error is never bound to a
                    # local here: with this frame in its traceback that would make a reference
                    # cycle, i.e. garbage only the cyclic GC can free, on every rejection.
                    self._window.reject(start)
                    wait = self._retry_at - start
                    if self._probe_interval is not None:  # the next probe's verdict may come first
                        probes = self._probes
                        wait = min(wait, max(probes.next_at - start, 0.0) + probes.verdict_in())
                    raise CircuitOpenError(self.name, wait)
                trial = _REJECTED
            else:
                trial = self._admit(start)
            if trial == _REJECTED:
                if fallback is None:
                    raise self._reject(start)
                return await self._fall_back(fallback, self._reject(start), start)

        cancelled_by_timer: asyncio.CancelledError | None = None
        try:
            if timer is None:
                result = await fn()
            else:
                token = timer.enter()
                try:
                    result = await fn()
                except asyncio.CancelledError as cancelled:
                    if not timer.leave_cancelled(token):
                        raise
                    cancelled_by_timer = cancelled
                except BaseException:
                    timer.leave(token)
                    raise
                else:
                    if timer.expired:
                        timer.leave(token)
                    else:  # the usual case, inlined: nothing expired, just forget the call
                        del timer.inflight[token]
        except Exception as error:
            end = clock()
            if self._is_failure(error):
                self._on_failure(start, end, trial, error)
                if fallback is not None:
                    return await self._fall_back(fallback, error, end)
            else:
                self._on_success(start, end, trial, error)
            raise
        except BaseException:
            # CancelledError from outside (the caller gave up), KeyboardInterrupt, SystemExit:
            # they say nothing about the gateway, so neither success nor failure.
            self._on_abandoned(trial)
            raise

        if cancelled_by_timer is not None:
            end = clock()
            try:
                if fallback is not None:
                    return await self._fall_back(fallback, self._timed_out(start, end, trial), end)
                raise self._timed_out(start, end, trial) from cancelled_by_timer
            finally:
                # The CancelledError's traceback holds this frame: drop the frame's reference
                # to it, or the two would form a cycle only the cyclic GC could free.
                cancelled_by_timer = None
        end = clock()
        if trial or self._subscribers:
            self._on_success(start, end, trial, None)
            return result
        # The common case, inlined: a plain success with nobody listening.
        latency = end - start
        if latency >= self._slow_failure_threshold:
            self._on_failure(start, end, trial, None, reason="slow_call")
            return result
        self._window.success(end, latency)  # never trips: see _on_success
        return result

    def protect(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorator form of :meth:`call`: every call of the returned function goes through."""

        @functools.wraps(fn)
        async def protected(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(lambda: fn(*args, **kwargs))

        return protected

    async def _fall_back(self, fallback: Fallback[T], error: BaseException, now: float) -> T:
        self._window.fallback(now)
        if self._subscribers:
            self._emit(EventType.FALLBACK, now, error=error)
        return await fallback(error)

    # -- admission and outcomes ----------------------------------------------------------------

    def _admit(self, now: float) -> int:
        """Admission outside the closed states: a trial generation, or ``_REJECTED``."""
        state = self._state
        if state is _OPEN:
            if now < self._retry_at or not self._may_probe():
                return _REJECTED
            self._transition(_HALF_OPEN, now, "reset_timeout")
        elif state is not _HALF_OPEN:
            return _REJECTED  # forced open
        if self._slots_taken() >= self._half_open_max:
            if now < self._retry_at:
                return _REJECTED
            # Every slot is held by a trial running longer than any call may: presume them lost.
            self._generation += 1
            self._trials = self._trial_successes = self._trial_failures = 0
        self._trials += 1
        self._retry_at = now + self._trial_patience
        return self._generation

    def _reject(self, now: float) -> CircuitOpenError:
        # forced open: the reset timeout is nominal, an operator decides when it ends
        retry_after = self._reset_timeout if self._state is _FORCED_OPEN else self._wait(now)
        rejection = CircuitOpenError(self.name, retry_after)
        self._window.reject(now)
        if self._subscribers:
            self._emit(EventType.REJECT, now, error=rejection)
        return rejection

    def _trials_in_flight(self) -> int:
        return self._trials - self._trial_successes - self._trial_failures

    def _slots_taken(self) -> int:
        """Trial slots in use: a success keeps its slot (it counts towards closing); a failure
        that did not re-open the circuit gives its slot to a new trial."""
        return self._trials - self._trial_failures

    def _wait(self, now: float) -> float:
        """How long a call rejected now should wait (open, or half-open with its slots taken).

        For an open breaker that is the sooner of the end of the open period and the next
        recovery probe (the probe may bring a half-open at once): the truth a Retry-After needs.
        """
        wait = self._retry_at - now
        if self._state is _OPEN and self._probe_interval is not None:
            # Not the moment the probe leaves but the moment its answer is in: a caller sent
            # back for the probe itself would find the breaker still open and be told to wait a
            # whole interval more, so every turned-away caller would miss every recovery once.
            wait = min(wait, max(self._probes.next_at - now, 0.0) + self._probes.verdict_in())
        if self._state is _HALF_OPEN and self._call_timeout is not None:
            # Every trial slot is taken. The trials' answers are due within the call timeout of
            # the latest one, and decide open or closed; the patience behind _retry_at (up to
            # the reset timeout) only presumes a trial lost.
            wait = min(wait, self._retry_at - self._trial_patience + self._call_timeout - now)
        if self._state is _HALF_OPEN and self._probe_interval is not None:
            # Trials usually answer within a gateway round trip (the probes' measure of it);
            # the call timeout is the worst case. Come back when the trials have likely
            # answered, and never later than a probe interval.
            wait = min(wait, self._probe_interval, 2.0 * self._probes.verdict_in())
        return wait if wait > 0.0 else 0.0

    def rejection_wait(self) -> float | None:
        """Seconds a call made now would be told to wait, or None if it would be let through.

        Asks without calling: nothing is admitted, counted or changed, so a caller can turn
        clients away before doing any work of its own (the API answers 503 before it stores
        anything). An open circuit whose reset timeout has passed answers None: the next call
        is the trial.
        """
        state = self._state
        if self._admit_all or state is _DISABLED:
            return None
        if state is _FORCED_OPEN:
            return self._reset_timeout
        now = self._clock()
        if now >= self._retry_at:
            return None  # a trial is due (open) or the one running is presumed lost (half-open)
        if state is _HALF_OPEN and self._slots_taken() < self._half_open_max:
            return None
        return self._wait(now)

    def _may_probe(self) -> bool:
        shared = self._shared
        return shared is None or shared.probe_permitted(self.name)

    def _on_success(self, start: float, end: float, trial: int, excused: Exception | None) -> None:
        latency = end - start
        if latency >= self._slow_failure_threshold:
            self._on_failure(start, end, trial, excused, reason="slow_call")
            return
        window = self._window
        window.success(end, latency)
        if trial and trial == self._generation:
            self._trial_successes += 1
            if self._trial_successes >= self._half_open_max:
                if self._subscribers:
                    self._emit(EventType.SUCCESS, end, latency=latency, error=excused)
                self._close_after_trial(end)
                return
        # A success never trips the breaker, even when the window's failed share is over the
        # threshold: the gateway has just answered. The share can cross the threshold without
        # a new failure when older successes age out of the window while the failures of a
        # short outage stay in it; tripping then would open the breaker after the outage
        # ended (the chaos run measured it: 0.85 s after the gateway came back) and turn
        # away the sales the recovery allows. The next failure still trips it.
        if self._subscribers:
            self._emit(EventType.SUCCESS, end, latency=latency, error=excused)

    def _on_failure(
        self,
        start: float,
        end: float,
        trial: int,
        error: BaseException | None,
        *,
        timed_out: bool = False,
        reason: str | None = None,
    ) -> None:
        latency = end - start
        window = self._window
        window.failure(end, latency, timed_out=timed_out)
        if self._subscribers:
            self._emit(
                EventType.TIMEOUT if timed_out else EventType.FAILURE,
                end,
                latency=latency,
                error=error,
                reason=reason,
            )
        if trial:
            if trial == self._generation:
                self._trial_failures += 1
                # Evidence, not one unlucky call: re-open once the failed share of the trials
                # (over at least half_open_max_calls of them) reaches the error threshold.
                judged = max(self._trial_successes + self._trial_failures, self._half_open_max)
                if self._trial_failures * 100 >= self._threshold * judged:
                    self._reopen_after_trial(end)
                else:
                    self._waiters.wake(1)
        elif (
            self._state is _CLOSED
            and window.calls >= self._volume
            and window.failures * 100 >= self._threshold * window.calls
        ):
            self._trip(end)

    def _timed_out(self, start: float, end: float, trial: int) -> CallTimeout:
        timeout = CallTimeout(self.name, self._call_timeout or 0.0)
        self._on_failure(start, end, trial, timeout, timed_out=True)
        return timeout

    def _on_abandoned(self, trial: int) -> None:
        self._cancelled += 1
        if trial and trial == self._generation:
            self._trials -= 1  # the slot goes to the next caller
            self._waiters.wake(1)

    # -- transitions ---------------------------------------------------------------------------

    def _transition(
        self,
        state: BreakerState,
        now: float,
        reason: str,
        *,
        error_rate: float | None = None,
    ) -> None:
        previous = self._state
        self._state = state
        self._admit_all = state is _CLOSED or state is _FORCED_CLOSED
        self._generation += 1
        self._trials = self._trial_successes = self._trial_failures = 0
        self._since = now
        self._since_wall = self._wall_clock()
        if state is _CLOSED:
            self._window.clear()  # a recovered breaker judges only what happens from now on
            self._failed_trials = 0
        if state is _OPEN or state is _FORCED_OPEN:
            self._opened += 1
        self._probes.entered(state, previous, reason, now, self._retry_at)
        if self._subscribers:
            self._emit(
                STATE_EVENTS[state],
                now,
                previous=previous,
                reason=reason,
                error_rate=error_rate,
            )
        if self._waiters:
            if state is _CLOSED or state is _FORCED_CLOSED or state is _DISABLED:
                self._waiters.wake(len(self._waiters))
            elif state is _HALF_OPEN:
                self._waiters.wake(self._half_open_max)

    def _open_period(self) -> float:
        """The next open period: adaptive (doubling per failed trial) and jittered, bounded."""
        period = self._reset_timeout
        if self._min_open is not None:
            period = min(period, self._min_open * 2.0 ** min(self._failed_trials, 30))
        if self._jitter:
            period *= self._rng.uniform(1.0 - self._jitter, 1.0 + self._jitter)
        return min(period, self._reset_timeout)

    def _trip(self, now: float) -> None:
        window = self._window
        rate = 100.0 * window.failures / window.calls if window.calls else 0.0
        open_for = self._open_period()
        self._retry_at = now + open_for
        self._transition(_OPEN, now, "error_rate", error_rate=rate)
        if self._shared is not None:
            self._shared.opened(self.name, open_for)

    def _reopen_after_trial(self, now: float) -> None:
        self._failed_trials += 1
        self._probes.trials_failed(now)  # a probe's "up" that brought these trials was wrong
        open_for = self._open_period()
        self._retry_at = now + open_for
        self._transition(_OPEN, now, "trial_failed")
        if self._shared is not None:
            self._shared.trial_finished(self.name, succeeded=False, open_for=open_for)

    def _close_after_trial(self, now: float) -> None:
        self._transition(_CLOSED, now, "trial_succeeded")
        if self._shared is not None:
            self._shared.trial_finished(self.name, succeeded=True, open_for=0.0)

    # -- manual control ------------------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (or another manual state). Not shared."""
        if self._state is not _FORCED_OPEN:
            self._retry_at = math.inf
            self._transition(_FORCED_OPEN, self._clock(), "forced")

    def force_closed(self) -> None:
        """Admit every call (timeout, classification, fallback and counting still apply), never
        trip, ignore shared state, until :meth:`reset`."""
        if self._state is not _FORCED_CLOSED:
            self._transition(_FORCED_CLOSED, self._clock(), "forced")

    def disable(self) -> None:
        """Become a pass-through: no timeout, no rejection, no fallback; calls are still counted
        and reported. :meth:`reset` re-enables the breaker."""
        if self._state is not _DISABLED:
            self._transition(_DISABLED, self._clock(), "disabled")

    # -- recovery probes (called by a BreakerProber, on the loop) --------------------------------

    def probe_due(self) -> bool:
        """Whether a recovery probe should be sent now (probes on, the breaker is looking for
        a recovery, its time has come)."""
        return self._looking() and self._clock() >= self._probes.next_at

    def next_probe_in(self) -> float | None:
        """Seconds until the next recovery probe is due; None when none is scheduled."""
        if not self._looking():
            return None
        return max(self._probes.next_at - self._clock(), 0.0)

    def _looking(self) -> bool:
        """Open with probes on, or half-open with every trial slot held by a trial still in
        flight. The second case is the open period's own trial sent into a gateway that hangs:
        without probes it would hide a recovery for up to a call timeout (30 s by default)."""
        if self._probe_interval is None:
            return False
        state = self._state
        return state is _OPEN or (
            state is _HALF_OPEN
            and self._trials_in_flight() > 0
            and self._slots_taken() >= self._half_open_max
        )

    def skip_probe(self) -> None:
        """Another instance probes this breaker now: schedule ours one interval later."""
        self._probes.reschedule(self._clock())

    def probe_sent(self) -> None:
        """A probe leaves now: the next one is due one (jittered) interval from now, whether
        or not this one has answered by then (a hanging gateway must not slow detection).

        While probes run they are the evidence: the open period's own trial (a real payment
        sent on a timer) waits for the reset timeout counted from the opening. That trial is
        the safety net for a probe path that is down while payments work; sent into an outage
        that hangs, it would hold the half-open slot past the recovery.
        """
        now = self._clock()
        self._probes.reschedule(now)
        if self._state is _OPEN and not self._probes.deferred:
            # (unless a probe already answered and its trial only waits out the back-off)
            self._retry_at = max(self._retry_at, self._since + self._reset_timeout)

    def record_probe(self, *, succeeded: bool, latency: float | None = None) -> None:
        """A probe sent by this instance was answered (``succeeded``) or not.

        Probes never count in the error-rate window. An answer moves an open breaker to
        half-open at once, unless earlier probes proved misleading (see the module doc); then
        the trial waits for their back-off, through the ordinary open-period path.
        """
        now = self._clock()
        probes = self._probes
        probes.note(succeeded, self._wall_clock(), here=True)
        if succeeded and latency is not None:
            probes.answered_in(latency)
        if self._subscribers:
            self._emit(
                EventType.PROBE,
                now,
                reason="succeeded" if succeeded else "failed",
                latency=latency,
            )
        if self._shared is not None:
            self._shared.probe_finished(self.name, succeeded=succeeded)
        if succeeded:
            self._on_probe_answered(now, "probe")
        else:
            self._on_probe_unanswered()

    def apply_shared_probe(self, *, succeeded: bool) -> None:
        """Another instance's probe of this breaker was answered (or not): act on it here too."""
        now = self._clock()
        self._probes.note(succeeded, self._wall_clock(), here=False)
        self._probes.reschedule(now)
        if succeeded:
            self._on_probe_answered(now, "shared_probe")
        else:
            self._on_probe_unanswered()

    def _on_probe_unanswered(self) -> None:
        """The gateway did not answer just now: a timer trial due in the next interval would
        be a real payment sent into an outage. Defer it past the next probe, but never beyond
        the reset timeout counted from the opening (in case only the probe's path is down)."""
        if self._state is _OPEN and self._probe_interval is not None:
            self._retry_at = max(self._retry_at, self._since + self._reset_timeout)

    def _on_probe_answered(self, now: float, reason: str) -> None:
        if self._state is _HALF_OPEN:
            if self._looking() and now >= self._probes.ready_at:
                # The trials in flight left before the gateway answered again and may hang for
                # a call timeout: presume them lost and let new trials decide (their late
                # answers belong to an old generation and are ignored).
                self._generation += 1
                self._trials = self._trial_successes = self._trial_failures = 0
                self._probes.half_open_by_probe = True
                self._waiters.wake(self._half_open_max)
            return
        if self._state is not _OPEN:
            return
        if now < self._probes.ready_at:
            # Not credible yet: a real trial at the end of the back-off settles it.
            self._retry_at = min(self._retry_at, self._probes.ready_at)
            self._probes.deferred = True
            return
        self._retry_at = now  # a trial is due at once
        self._probes.deferred = True
        self._transition(_HALF_OPEN, now, reason)

    # -- waiting for admission (Prefer: wait) ---------------------------------------------------

    async def wait_admitting(self, max_wait: float) -> bool:
        """Wait until a call made now would be admitted, at most ``max_wait`` seconds.

        Returns at once with True when it already would be. Waiting costs no CPU: it sleeps on
        a future that a state change (closed, half-open with a free trial slot) resolves, or
        until the open period ends (a trial becomes due). Returns False on timeout.
        """
        return await self._waiters.wait(self.rejection_wait, max_wait)

    def reset(self) -> None:
        """Back to closed with a fresh window (lifetime totals are kept); ends manual states."""
        if self._state is _CLOSED:
            self._window.clear()
        else:
            self._transition(_CLOSED, self._clock(), "reset")

    # -- shared state (called by the listener, on the loop) ------------------------------------

    def apply_shared_open(self, open_for: float) -> None:
        """Another instance opened this breaker for ``open_for`` more seconds: open here too.

        A closed or half-open breaker opens (without publishing it again); an open one extends
        its open period if the other's ends later. Manual states ignore shared state.
        """
        now = self._clock()
        until = now + open_for
        state = self._state
        if state is _CLOSED or state is _HALF_OPEN:
            self._retry_at = until
            self._transition(_OPEN, now, "shared")
        elif state is _OPEN and until > self._retry_at:
            self._retry_at = until

    def apply_shared_close(self) -> None:
        """Another instance's trial call succeeded: close (fresh window) if open or half-open."""
        if self._state is _OPEN or self._state is _HALF_OPEN:
            self._transition(_CLOSED, self._clock(), "shared")

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Deliver every event of this breaker to ``subscriber``; returns the unsubscriber.

        Subscribers are called synchronously, in order; one that raises is logged and skipped.
        """
        self._subscribers.append(subscriber)
        return functools.partial(self.unsubscribe, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop delivering events to ``subscriber`` (no error if it was not subscribed)."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def _emit(
        self,
        event_type: EventType,
        now: float,
        *,
        previous: BreakerState | None = None,
        reason: str | None = None,
        latency: float | None = None,
        error: BaseException | None = None,
        error_rate: float | None = None,
    ) -> None:
        event = BreakerEvent(
            type=event_type,
            breaker=self.name,
            state=self._state,
            at=now,
            timestamp=self._wall_clock(),
            previous_state=previous,
            reason=reason,
            latency=latency,
            error_type=error_type_name(error),
            error_rate=error_rate,
        )
        deliver(self._subscribers, event)

    # -- snapshot ------------------------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        """Where the breaker stands now; also performs a due open → half-open transition."""
        now = self._clock()
        if self._state is _OPEN and now >= self._retry_at and self._may_probe():
            self._transition(_HALF_OPEN, now, "reset_timeout")
        state = self._state
        next_trial_in: float | None = None
        if state is _OPEN:
            next_trial_in = max(self._retry_at - now, 0.0)
        elif state is _HALF_OPEN:
            next_trial_in = (
                0.0 if self._slots_taken() < self._half_open_max else max(self._retry_at - now, 0.0)
            )
        wall_now = self._wall_clock()
        return BreakerSnapshot(
            name=self.name,
            state=state.value,
            since=self._since_wall.isoformat(),
            since_monotonic=self._since,
            next_trial_at=(
                None
                if next_trial_in is None
                else (wall_now + timedelta(seconds=next_trial_in)).isoformat()
            ),
            next_trial_in=next_trial_in,
            trials_in_flight=(self._trials_in_flight() if state is _HALF_OPEN else 0),
            window=self._window.stats(now),
            lifetime=self._window.lifetime(cancelled=self._cancelled, opened=self._opened),
            shared=SHARING_DISABLED if self._shared is None else self._shared.status(),
            error_threshold_percentage=self._threshold,
            volume_threshold=self._volume,
            probes=self._probes.stats(
                None
                if state is not _OPEN or self._probe_interval is None
                else max(self._probes.next_at - now, 0.0),
            ),
        )
