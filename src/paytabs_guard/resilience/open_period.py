"""The breaker's open period and what a turned-away caller is told to wait.

The open period is randomised (``open_jitter``) and adapts: ``min_open_time`` after a trip,
doubled after each failed trial, never more than ``reset_timeout`` (spread below it once it
gets there); ``_retry_at`` marks its end
(in half-open, the moment a trial still running is presumed lost). A rejected call carries the
wait until the breaker may admit again, the truth a ``Retry-After`` needs, and
:meth:`OpenPeriod.rejection_wait` tells it without calling.
"""

from __future__ import annotations

import math
from typing import Final

from paytabs_guard.resilience.breaker_core import (
    _DISABLED,
    _FORCED_OPEN,
    _HALF_OPEN,
    _OPEN,
    BreakerCore,
)
from paytabs_guard.resilience.errors import CircuitOpenError
from paytabs_guard.resilience.events import EventType

PASS_PATIENCE: Final = 1.0
"""Seconds a held caller let through on a free trial slot keeps it promised while it goes on
to call (``OpenPeriod._held_pass``)."""

FORCED_OPEN_WAIT: Final = 5.0
"""What a call a forced-open breaker turns away is told to wait, in seconds (at most the reset
timeout): how often to look again, since only the operator knows when it ends."""


class OpenPeriod(BreakerCore):
    """The open period and rejections of a
    :class:`~paytabs_guard.resilience.breaker.CircuitBreaker`."""

    __slots__ = ()

    def _open_period(self) -> float:
        """The next open period: adaptive (doubling per failed trial) and jittered, bounded."""
        period = self._reset_timeout
        if self._min_open is not None:
            period = min(period, self._min_open * 2.0 ** min(self._failed_trials, 30))
        if self._jitter:
            # Spread under the bound too: a spread clipped at it would put half the draws
            # exactly on it, and breakers that opened together would try again together.
            high = min(1.0 + self._jitter, self._reset_timeout / period)
            period *= self._rng.uniform(1.0 - self._jitter, high)
        return period

    def _reject(self, now: float) -> CircuitOpenError:
        self._waiting_for_a_verdict(now)  # this caller is told of the probe it brought forward
        if self._state is _FORCED_OPEN:
            # An operator decides when it ends, and nobody here knows when: a cadence to look
            # again at, not a prediction. (It said the reset timeout, 30 s: an outside run's
            # merchants, each with 30 s for an order, were all sent past the operator's reset.)
            retry_after = min(self._reset_timeout, FORCED_OPEN_WAIT)
        else:
            retry_after = self._wait(now)
        rejection = CircuitOpenError(self.name, retry_after)
        self._window.reject(now)
        if self._subscribers:
            self._emit(EventType.REJECT, now, error=rejection)
        return rejection

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
        is the trial. None is a forecast, not a promise: in half-open, callers that all ask
        at once are all told None while only the free slots' worth will get one. A caller
        that must not start work it cannot finish admits with ``reserve()`` instead.
        """
        state = self._state
        if self._admit_all or state is _DISABLED:
            return None
        if state is _FORCED_OPEN:
            return min(self._reset_timeout, FORCED_OPEN_WAIT)
        now = self._clock()
        if now >= self._retry_at:
            if state is _OPEN and self._shared is not None:
                # A trial is due, but across instances only the lease holder runs it: until
                # this instance has it, a call would be rejected, so a held caller keeps
                # waiting rather than being let through into that rejection.
                return self._shared.trial_wait(self.name)
            return None  # a trial is due (open) or the one running is presumed lost (half-open)
        if state is _HALF_OPEN and self._slots_taken() < self._half_open_max:
            return None
        return self._wait(now)

    def count_turned_away(self) -> float:
        """A caller turned a call away on :meth:`rejection_wait`'s word (the API's 503 before
        any work): count it as a rejection, in the stats and with a reject event, as
        :meth:`call` would have. Operators read "rejects" as the sales an open breaker turned
        away; the fast path must not hide them.

        Returns the wait to tell that caller: a turned-away sale brings the next recovery
        probe forward, so it may be shorter than the forecast :meth:`rejection_wait` gave."""
        return self._reject(self._clock()).retry_after_seconds

    # -- waiting for admission (Prefer: wait) ---------------------------------------------------

    async def wait_admitting(self, max_wait: float) -> bool:
        """Wait until a call made now would be admitted, at most ``max_wait`` seconds.

        Returns at once with True when it already would be. Waiting costs no CPU: it sleeps on
        a future that a state change (closed, half-open with a free trial slot) resolves, or
        until the open period ends (a trial becomes due). Returns False on timeout.
        """
        return await self._waiters.wait(self._held_wait, max_wait)

    def _held_wait(self) -> float | None:
        """For a caller held until a call would be admitted: None when one would be now, else
        how long it may sleep before it looks again. A sale that waits, like one turned away,
        brings the next recovery probe forward.

        Not :meth:`rejection_wait`'s answer, which names the next probe's verdict for a caller
        who must come back on its own: a held caller sleeps on a future that every way in
        resolves (a state change, a freed trial slot, a probe's answer, a timer trial moved
        earlier), so it need only wake on its own when time alone lets calls through, at
        ``_retry_at`` (the timer's trial due, or a trial presumed lost). While it sleeps, it
        keeps hurrying each next probe (``probe_sent``) without waking to ask."""
        wait = self.rejection_wait()
        now = self._clock()
        if wait is not None and self._waiting_for_a_verdict(now):
            wait = self.rejection_wait()
        if wait is None:
            return self._held_pass(now)
        until_timer = self._retry_at - now
        if (self._state is _OPEN or self._state is _HALF_OPEN) and 0.0 < until_timer < math.inf:
            return max(wait, until_timer)
        return wait

    def _held_pass(self, now: float) -> float | None:
        """A held caller would be let through now: None if it may go, else how long it may
        sleep before it looks again.

        Outside the closed states only the trial slots' worth may go. Callers a state change
        lets through are woken that many at a time (breaker_core.py), but the end of the open
        period (or a trial presumed lost) is no state change: every held caller wakes on its
        own at ``_retry_at`` and would find the trial due; let go together, all but the
        slots' worth were turned away the moment they called. So each one let go here is a
        pass on a free slot until its call is admitted (``_admit``) or ``PASS_PATIENCE``
        has passed (its client left on the way); the others sleep on, until a slot comes
        free or the state changes."""
        state = self._state
        if state is not _OPEN and state is not _HALF_OPEN:
            return None
        if now - self._held_passed_at >= PASS_PATIENCE:
            self._held_passes = 0
        if state is _OPEN or now >= self._retry_at:
            taken = 0 if state is _OPEN else self._trial_successes  # (lost trials are freed)
        else:
            taken = self._slots_taken()
        if self._held_passes + taken >= self._half_open_max:
            return max(self._held_passed_at + PASS_PATIENCE - now, 0.001)
        self._held_passes += 1
        self._held_passed_at = now
        return None
