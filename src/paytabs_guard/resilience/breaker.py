"""The circuit breaker: a rolling error-rate window, lazy state changes, bounded half-open trials.

State machine::

    closed ──(a failure brings the error rate >= threshold, calls >= volume)──▶ open
    open ──(a recovery probe answered, or the open period elapsed)──▶ half_open
    half_open ──(half_open_max_calls trials succeeded, failed share under the threshold)──▶ closed
    half_open ──(failed share of the trials reached the threshold, none succeeded)──▶ open
    half_open ──(...reached it, some succeeded: degraded, the error rate set aside)──▶ closed
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
* A caller that must decide before doing work of its own (the API, before it stores a
  payment) admits ahead with :meth:`CircuitBreaker.reserve`: in half-open the trial slot is
  taken then and the later call uses it; one left unused is given back (admission.py).
* Recovery is detected, not only waited for: while open, a recovery probe is due every
  ``probe_interval`` (a quarter of it while callers are being turned away: probes.py), and an
  answer moves the breaker to half-open at once (recovery.py).
* The open period is randomised and adapts (open_period.py).
* Nothing runs in the background and nothing awaits Redis: shared state arrives through
  :meth:`CircuitBreaker.apply_shared_open` / :meth:`~CircuitBreaker.apply_shared_close`, called
  by a listener (control.py), and leaves through the synchronous :class:`SharedHook`.

A breaker belongs to one event loop and is not thread-safe, like everything asyncio.

This module holds the call path: admission, the call under its timeout, its outcome, and the
transitions outcomes cause (trip, re-open or close after the half-open trials), plus the
snapshot. The rest of :class:`CircuitBreaker` is mixins over one set of fields
(breaker_core.py, which also holds the transition all parts share): open_period.py,
recovery.py, control.py. Every part writes the same few fields (state, ``_retry_at``, the trial
generation and counters) under one invariant, so they share one object rather than each owning
state; the helpers with state of their own live beside them: admission.py, probes.py,
waiters.py, window.py, deadline.py.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from paytabs_guard.resilience.admission import NOTHING_RESERVED, Reservation, take_reserved
from paytabs_guard.resilience.breaker_core import _CLOSED, _DISABLED, _HALF_OPEN, _OPEN
from paytabs_guard.resilience.config import BreakerConfig
from paytabs_guard.resilience.control import ManualControl
from paytabs_guard.resilience.errors import CallTimeout, CircuitOpenError
from paytabs_guard.resilience.events import BreakerState, EventType
from paytabs_guard.resilience.open_period import OpenPeriod
from paytabs_guard.resilience.recovery import RecoveryProbing
from paytabs_guard.resilience.shared_hook import SharedHook
from paytabs_guard.resilience.stats import SHARING_DISABLED, BreakerSnapshot

T = TypeVar("T")
P = ParamSpec("P")

Fallback = Callable[[BaseException], Awaitable[T]]
"""Called with the rejection or failure when a protected call cannot give a result."""

_REJECTED = -1

__all__ = ["CircuitBreaker", "Fallback", "Reservation", "SharedHook"]  # (from their modules)


class CircuitBreaker(OpenPeriod, RecoveryProbing, ManualControl):
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

    __slots__ = ()  # the fields are BreakerCore's

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
        stall = self._stall
        if self._admit_all:
            trial = 0
            if stall is not None and self._state is _CLOSED and stall.stalled(start, self._volume):
                # Calls went out and none came back: open now, not at their call timeout.
                self._trip(start, "stalled")
                if fallback is None:
                    raise self._reject(start)
                return await self._fall_back(fallback, self._reject(start), start)
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
                        # As in _reject, a waiting sale hurries the probe (nobody to tell: a
                        # prober would be a subscriber, and this path has none).
                        probes.demanded()
                        wait = min(wait, max(probes.next_at - start, 0.0) + probes.verdict_in())
                    raise CircuitOpenError(self.name, wait)
                trial = _REJECTED
            else:
                # A trial admitted ahead (reserve()) already holds its slot: use it, take no other.
                trial = self._reserved_trial() or self._admit(start)
            if trial == _REJECTED:
                if fallback is None:
                    raise self._reject(start)
                return await self._fall_back(fallback, self._reject(start), start)

        flight = 0 if stall is None else stall.enter(start)
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
            # No answer at all (a read timeout shorter than ours) is a timeout, not an answer.
            answered = not self._is_unanswered(error)
            if stall is not None:
                stall.leave(flight, end, answered=answered)  # an error is an answer, or quick
            if answered and start > self._answered_sent_at:
                self._answered_sent_at = start
            if not answered:
                self._no_answer(start, end, trial, error)
                if fallback is not None:
                    return await self._fall_back(fallback, error, end)
            elif self._is_failure(error):
                self._on_failure(start, end, trial, error)
                if fallback is not None:
                    return await self._fall_back(fallback, error, end)
            else:
                self._on_success(start, end, trial, error)
            raise
        except BaseException:
            # CancelledError from outside (the caller gave up), KeyboardInterrupt, SystemExit:
            # they say nothing about the gateway, so neither success nor failure.
            if stall is not None:
                stall.leave(flight, start, answered=False)
            self._on_abandoned(trial)
            raise
        if stall is not None:
            stall.leave(flight, clock(), answered=cancelled_by_timer is None)

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
        if start > self._answered_sent_at:
            self._answered_sent_at = start
        if trial or self._subscribers:
            self._on_success(start, end, trial, None)
            return result
        # The common case, inlined: a plain success with nobody listening.
        latency = end - start
        if latency >= self._slow_failure_threshold:
            self._on_failure(start, end, trial, None, reason="slow_call")
            return result
        self._window.success(end, latency)  # never trips: see _on_success
        self._failures_in_a_row = 0
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

    def reserve(self) -> Reservation:
        """Admit the caller's next call now, before it does any work of its own.

        Raises :class:`CircuitOpenError` (counted as a rejection, with its reject event) when a
        call made now would be rejected. Otherwise returns a :class:`Reservation`, a context
        manager: within its block the next call through this breaker in this task is the call
        admitted now. In half-open that is a trial slot taken now, so a crowd that arrives at
        once cannot all pass the check and only then find the slots taken (admission.py); a
        slot still unused when the block ends is given back. Closed, nothing is held.
        """
        if self._admit_all or self._state is _DISABLED:
            return NOTHING_RESERVED
        now = self._clock()
        trial = self._admit(now)
        if trial == _REJECTED:
            raise self._reject(now)
        return Reservation(self, trial, self._give_back)

    def _reserved_trial(self) -> int:
        """The trial generation reserved for this call, if still current or presumed lost in
        this half-open period; else 0 (the call is admitted as any other).

        A reservation presumed lost before its call (the caller's own commit outlived the
        probes' answer time) still goes: the caller has stored its payment on the strength of
        it, and a late trial is heard like any presumed lost (``_adopt``)."""
        generation = take_reserved(self)
        if generation == self._generation or self._presumed_lost(generation):
            return generation
        return 0

    def _give_back(self, generation: int) -> None:
        """A trial of ``generation`` will not be made after all: its slot goes to the next
        caller (unless the breaker has moved on, and the slot with it)."""
        if generation == self._generation:
            self._trials -= 1
            self._waiters.wake(1)

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
            self._presume_trials_lost()
        self._trials += 1
        if self._held_passes:
            self._held_passes -= 1  # a held caller let through on this slot, most likely
        self._retry_at = now + self._trial_patience
        self._probes.trials_at = now  # the youngest trial in flight left now
        return self._generation

    def _on_success(self, start: float, end: float, trial: int, excused: Exception | None) -> None:
        latency = end - start
        if latency >= self._slow_failure_threshold:
            self._on_failure(start, end, trial, excused, reason="slow_call")
            return
        window = self._window
        window.success(end, latency)
        self._failures_in_a_row = 0
        if trial and (trial == self._generation or self._adopt(trial)):
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
                if self._trial_failures * 100 < self._threshold * judged:
                    self._waiters.wake(1)
                elif self._trial_successes and self._in_a_row_limit:
                    # (Only with a limit on failures in a row: it is what opens it then.)
                    self._close_degraded(end)
                else:
                    self._reopen_after_trial(end)
        elif self._state is _CLOSED:
            self._failures_in_a_row += 1
            over = window.calls >= self._volume and window.failures * 100 >= self._threshold * (
                window.calls
            )
            if self._degraded and not over and window.calls >= self._volume:
                self._degraded = False  # the rate is back under the threshold: healthy again
            if over and not self._degraded:
                self._trip(end, "error_rate")
            elif self._in_a_row_limit and self._failures_in_a_row >= self._in_a_row_limit:
                # A gateway that went down hard, before its failures outweigh the window's
                # earlier successes (flapping: a 3-6 s cut after 10 s of sales).
                self._trip(end, "consecutive_failures")

    def _timed_out(self, start: float, end: float, trial: int) -> CallTimeout:
        timeout = CallTimeout(self.name, self._call_timeout or 0.0)
        self._no_answer(start, end, trial, timeout)
        return timeout

    def _no_answer(self, start: float, end: float, trial: int, error: Exception) -> None:
        """A call that got no answer: ours or the transport's (``is_unanswered``) timeout."""
        if not trial and start < self._answered_sent_at:
            # PayTabs answered a call that left after this one, before this one's timeout:
            # the hang it went into is over. Counted, a short hang's calls timing out together
            # a call timeout later tripped the breaker on a gateway healthy for 25 s (an
            # outside run). The stall watch sees a hang while it lasts.
            if self._subscribers:
                self._emit(EventType.TIMEOUT, end, latency=end - start, error=error,
                           reason="stale")  # fmt: skip
            return
        self._on_failure(start, end, trial, error, timed_out=True)

    def _on_abandoned(self, trial: int) -> None:
        self._cancelled += 1
        if trial:
            self._give_back(trial)

    # -- transitions ---------------------------------------------------------------------------

    def _trip(self, now: float, reason: str) -> None:
        window = self._window
        rate = 100.0 * window.failures / window.calls if window.calls else 0.0
        open_for = self._open_period()
        self._retry_at = now + open_for
        self._transition(_OPEN, now, reason, error_rate=rate)
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

    def _close_degraded(self, now: float) -> None:
        """The trials failed over the threshold, but some succeeded: PayTabs is degraded, not
        down. Turning every call away would lose the sales it still completes (an outside run:
        at 60 % failures, 24 % of orders paid with the breaker against 95 % without), so the
        breaker closes with the error rate set aside. What opens it then is what a gateway
        that went down does: failures in a row, or calls that stall; and the rate counts again
        once a failure finds it under the threshold."""
        self._transition(_CLOSED, now, "degraded")
        self._degraded = True
        if self._shared is not None:
            self._shared.trial_finished(self.name, succeeded=True, open_for=0.0, degraded=True)

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
            degraded=self._degraded,
        )
