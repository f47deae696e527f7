"""What every part of the circuit breaker shares: its fields and the primitives that change them.

:class:`BreakerCore` holds the breaker's state (one set of slots, set up from the config in one
place) and what all its parts use: the transition, which resets the trial generation and
counters with every change of state; the count of trial slots in use and in flight; whether
this instance may end an open period (shared state); and events. The parts are mixins over it,
each in its own module: ``open_period.py`` (how long the circuit stays open and what a
turned-away caller is told), ``recovery.py`` (recovery probes), ``control.py`` (manual states
and shared state). ``breaker.py`` joins them with the call path into
:class:`~paytabs_guard.resilience.breaker.CircuitBreaker`.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable

from paytabs_guard.resilience.clock import MonotonicClock, WallClock, utc_now
from paytabs_guard.resilience.config import BreakerConfig
from paytabs_guard.resilience.deadline import DeadlineTimer
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
from paytabs_guard.resilience.stall import StallWatch
from paytabs_guard.resilience.waiters import AdmissionWaiters
from paytabs_guard.resilience.window import RollingWindow

# Module-level aliases: a global load is cheaper than an enum attribute on the hot path. The
# breaker's other modules import them from here.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_FORCED_CLOSED = BreakerState.FORCED_CLOSED
_DISABLED = BreakerState.DISABLED


class BreakerCore:
    """The fields of a :class:`~paytabs_guard.resilience.breaker.CircuitBreaker` and the
    primitives its parts share; its arguments are documented there. Not used on its own."""

    __slots__ = (
        "_admit_all",
        "_answered_sent_at",
        "_call_timeout",
        "_cancelled",
        "_clock",
        "_config",
        "_degraded",
        "_failed_trials",
        "_failures_in_a_row",
        "_generation",
        "_half_open_max",
        "_held_passed_at",
        "_held_passes",
        "_in_a_row_limit",
        "_is_failure",
        "_is_unanswered",
        "_jitter",
        "_min_open",
        "_opened",
        "_period_generation",
        "_probe_interval",
        "_probes",
        "_reset_timeout",
        "_retry_at",
        "_rng",
        "_safety_net",
        "_shared",
        "_since",
        "_since_wall",
        "_slow_failure_threshold",
        "_stall",
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
        self._in_a_row_limit = config.consecutive_failures or 0  # 0: the rate alone decides
        self._half_open_max = config.half_open_max_calls
        self._reset_timeout = config.reset_timeout
        self._is_failure = config.is_failure
        self._is_unanswered = config.is_unanswered
        self._call_timeout = config.call_timeout
        self._timer = None if config.call_timeout is None else DeadlineTimer(config.call_timeout)
        self._stall = None if config.stall_after is None else StallWatch(config.stall_after, now)
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
        # The first generation of the current state: trials presumed lost in this half-open
        # period carry one from here to the current one, and are still heard if they answer.
        self._period_generation = 1
        self._trials = 0  # trials admitted in this half-open period, minus abandoned ones
        self._trial_successes = 0
        self._cancelled = 0
        self._opened = 0
        self._trial_failures = 0
        self._failed_trials = 0  # consecutive half-open periods that ended open again
        self._failures_in_a_row = 0  # failed calls since the last success (closed state)
        # Closed after trials that partly succeeded: PayTabs completes some calls, so the
        # error rate alone does not open it (breaker.py, _close_degraded).
        self._degraded = False
        # When the latest-sent call PayTabs answered (success or error) left: a call sent
        # before it that times out afterwards is old news (breaker.py, _timed_out).
        self._answered_sent_at = -math.inf
        self._min_open = config.min_open_time
        self._jitter = config.open_jitter
        self._probe_interval = config.probe_interval
        self._rng = rng if rng is not None else random.Random()
        self._probes = ProbeBook(config.probe_interval, config.open_jitter, self._rng)
        # While probes run, the open period's own trial (a real payment) waits this long after
        # the opening (recovery.py); drawn anew at each opening, like the open period.
        self._safety_net = config.reset_timeout
        self._waiters = AdmissionWaiters()
        # Held callers let through on a free trial slot whose call is not admitted yet, and
        # when the last was (open_period.py, _held_pass).
        self._held_passes = 0
        self._held_passed_at = -math.inf

    def _trials_in_flight(self) -> int:
        return self._trials - self._trial_successes - self._trial_failures

    def _slots_taken(self) -> int:
        """Trial slots in use: a success keeps its slot (it counts towards closing); a failure
        that did not re-open the circuit gives its slot to a new trial."""
        return self._trials - self._trial_failures

    def _presume_trials_lost(self) -> None:
        """The trials in flight are presumed lost: their slots go to new trials, of a new
        generation. The trials already done stay counted: a success is evidence the gateway
        works, whatever a later trial does. A trial presumed lost that answers after all is
        still heard (``_adopt``)."""
        self._generation += 1
        self._trials = self._trial_successes + self._trial_failures

    def _presumed_lost(self, trial: int) -> bool:
        """Whether ``trial`` (a generation) is a trial of this half-open period that was
        presumed lost."""
        return self._state is _HALF_OPEN and self._period_generation <= trial < self._generation

    def _adopt(self, trial: int) -> bool:
        """Whether ``trial``, which has just succeeded, was presumed lost in this half-open
        period; if so it is counted again, as a trial admitted now. Its late failure is not
        adopted: that was paid for when it was presumed lost (new trials went, a probe that
        brought it lost credibility)."""
        if not self._presumed_lost(trial):
            return False
        self._trials += 1
        return True

    def _may_probe(self) -> bool:
        shared = self._shared
        return shared is None or shared.probe_permitted(self.name)

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
        self._period_generation = self._generation
        self._trials = self._trial_successes = self._trial_failures = 0
        if state is not _HALF_OPEN:  # (the passes of a trial due go on into half-open)
            self._held_passes = 0
        self._since = now
        self._since_wall = self._wall_clock()
        self._failures_in_a_row = 0
        self._degraded = False  # only _close_degraded / apply_shared_close set it, afterwards
        if state is _CLOSED:
            self._window.clear()  # a recovered breaker judges only what happens from now on
            self._failed_trials = 0
        if state is _OPEN or state is _FORCED_OPEN:
            self._opened += 1
        if state is _OPEN and self._probe_interval is not None and self._jitter:
            # Spread below the reset timeout, never past it: instances that opened together
            # must not send their safety-net trials together.
            self._safety_net = self._reset_timeout * self._rng.uniform(1.0 - self._jitter, 1.0)
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

    def _waiting_for_a_verdict(self, now: float) -> bool:
        """A sale is turned away or held until the gateway is known to answer again: the next
        recovery probe comes sooner (``ProbeBook.demanded``), and the prober hears of it (the
        ``probe_hurried`` event). Returns whether it moved. Not while forced open: an operator,
        not a probe, ends that."""
        if self._probe_interval is None or self._state is _FORCED_OPEN:
            return False
        if not self._probes.demanded():
            return False
        if self._subscribers:
            self._emit(EventType.PROBE_HURRIED, now)
        return True

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
