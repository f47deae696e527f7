"""What a circuit breaker knows of its recovery probes: their schedule, their credibility and
their counts (``ProbeBook``).

The breaker owns the state machine and decides what an answer does (recovery.py: an answer moves
an open breaker to half-open unless the probes are not credible yet); this book only remembers
and schedules. A probe that said "up" while the trials it brought then failed loses credibility:
the next "up" is believed only after a back-off that doubles per miss, up to
``PROBE_BACKOFF_CAP`` probe intervals. While callers are being turned away, the next probe is
due sooner (``DEMAND_SHARE`` of an interval after the last one): a recovery is worth finding
fast when sales wait for it, and not worth extra calls into a gateway when none do, nor while
the probes' "up" is not believed.
"""

from __future__ import annotations

import random
from datetime import datetime

from paytabs_guard.resilience.events import BreakerState
from paytabs_guard.resilience.stats import ProbeStats

PROBE_BACKOFF_CAP = 4.0
"""A misleading probe's back-off doubles up to this many probe intervals."""
ASSUMED_PROBE_ANSWER = 0.2
"""Until a probe has been answered, how long an answer is assumed to take (seconds)."""
DEMAND_SHARE = 0.25
"""While callers are being turned away, the next probe leaves this share of an interval after
the last one: a recovery is found four times sooner while sales wait, and the gateway sees at
most four probes an interval."""
MIN_HURRIED_GAP = 0.05
"""Probes brought forward are never closer than this (seconds): the shortest interval the
service accepts, so no setting makes them more than twenty a second."""
VERDICT_MARGIN = 1.5
"""A caller told to come back for a verdict arrives this many expected answer times after the
probe leaves: late enough that the verdict is in, early enough to lose little when it is "up"."""


def hurried_gap(gap: float) -> float:
    """The gap between probes while callers are turned away, for a quiet-time ``gap``."""
    return max(gap * DEMAND_SHARE, min(gap, MIN_HURRIED_GAP))


class ProbeBook:
    """Recovery probes of one breaker: schedule, credibility, counts. ``interval`` None: no
    probes (the breaker then waits out its open period)."""

    __slots__ = (
        "_jitter",
        "_rng",
        "answer_time",
        "deferred",
        "failed",
        "half_open_by_probe",
        "here",
        "hurried_at",
        "interval",
        "last_at",
        "last_result",
        "misses",
        "next_at",
        "ready_at",
        "sent",
        "succeeded",
        "trials_at",
    )

    def __init__(self, interval: float | None, jitter: float, rng: random.Random) -> None:
        self.interval = interval
        self._jitter = jitter
        self._rng = rng  # the breaker's: one seeded source keeps a test's schedule reproducible
        self.next_at = 0.0  # monotonic: when the next probe is due (while open)
        self.hurried_at = 0.0  # monotonic: when it is due instead while callers are turned away
        self.ready_at = 0.0  # monotonic: a probe's "up" is believed from then on
        self.misses = 0  # probe "up"s in a row that real trials contradicted
        self.half_open_by_probe = False
        # monotonic: when the youngest trial of this half-open period left (or, before any,
        # when the half-open began); trials in flight are overdue counted from it
        self.trials_at = 0.0
        self.deferred = False  # a probe answered; the next half-open is its trial
        self.sent = self.succeeded = self.failed = 0
        self.last_result: str | None = None
        self.last_at: datetime | None = None
        self.here = False  # the last verdict came from this instance's own probe
        self.answer_time: float | None = None  # smoothed seconds a probe takes to be answered

    def gap(self) -> float:
        """Seconds to the next probe: the interval, spread so no two breakers probe in step."""
        interval = self.interval or 0.0
        spread = max(self._jitter, 0.25)
        return interval * self._rng.uniform(1.0 - spread, 1.0 + spread)

    def reschedule(self, now: float) -> None:
        """The next probe is due one (jittered) interval from ``now``."""
        self._schedule(now, self.gap())

    def _schedule(self, now: float, gap: float) -> None:
        self.next_at = now + gap
        self.hurried_at = now + hurried_gap(gap)

    def demanded(self) -> bool:
        """A caller was turned away for want of a verdict: the next probe is due a share of an
        interval after the last one (``DEMAND_SHARE``) rather than a whole one. Returns whether
        that brought it forward (once per probe: every caller after the first finds it done).

        Only a caller turned away since the last probe left brings the next one forward, so
        the probes added for waiting sales never outnumber the calls the gateway was spared;
        with nobody waiting (a quiet night) probes keep to the interval.

        Never before ``ready_at``: until then a probe's "up" is not believed (it was wrong
        about this outage), so hurrying it finds nothing sooner; it would only send the
        gateway four times the probes in a partial outage."""
        hurried = max(self.hurried_at, self.ready_at)
        if hurried < self.next_at:
            self.next_at = hurried
            return True
        return False

    def entered(
        self, state: BreakerState, previous: BreakerState, reason: str, now: float, retry_at: float
    ) -> None:
        """The breaker moved to ``state`` (for ``reason``); its open period ends at ``retry_at``."""
        if state is BreakerState.CLOSED:
            self.misses = 0  # a recovered breaker believes its probes again
            self.ready_at = 0.0
        if state is BreakerState.OPEN and previous is not state and self.interval is not None:
            # The first probe comes before the open period's own trial would.
            self._schedule(now, min(self.gap(), 0.5 * (retry_at - now)))
        if state is BreakerState.HALF_OPEN:
            # A trial the probe asked for (at once, or deferred to the end of its back-off)
            # judges the probe too.
            self.half_open_by_probe = self.deferred or reason == "probe"
            self.trials_at = now
            self.deferred = False
            if self.interval is not None and not self.half_open_by_probe:
                # The open period's own trial: if it hangs, probes resume one interval on.
                self.reschedule(now)
        else:
            self.half_open_by_probe = False
        if state is BreakerState.CLOSED:
            self.deferred = False

    def trials_failed(self, now: float) -> None:
        """The trials of this half-open period failed. If a probe's "up" brought it, the probe
        does not see this outage (queries answer, payments do not): believe the next "up" only
        after a back-off."""
        if self.half_open_by_probe and self.interval is not None:
            self.misses += 1
            self.ready_at = now + self.interval * min(2.0**self.misses, PROBE_BACKOFF_CAP)

    def answered_in(self, latency: float) -> None:
        """Fold an answered probe's latency into the smoothed answer time (EWMA, weight 0.3:
        a few answers follow a change of the gateway's speed, one slow answer does not)."""
        previous = self.answer_time
        self.answer_time = latency if previous is None else 0.7 * previous + 0.3 * latency

    def verdict_in(self) -> float:
        """Seconds from a probe (or trial) leaving to its answer being in, with a margin: the
        smoothed answer time, assumed until a probe has been answered."""
        answer = self.answer_time
        return VERDICT_MARGIN * (ASSUMED_PROBE_ANSWER if answer is None else answer)

    def note(self, succeeded: bool, at: datetime, *, here: bool) -> None:
        """A probe's verdict; ``here``: this instance sent it (else another instance did)."""
        if here:
            self.sent += 1
            if succeeded:
                self.succeeded += 1
            else:
                self.failed += 1
        self.last_result = "succeeded" if succeeded else "failed"
        self.last_at = at
        self.here = here

    def stats(self, next_in: float | None) -> ProbeStats:
        """The snapshot's view; ``next_in``: seconds to the next probe, if one is scheduled."""
        return ProbeStats(
            interval=self.interval,
            sent=self.sent,
            succeeded=self.succeeded,
            failed=self.failed,
            last_result=self.last_result,
            last_at=None if self.last_at is None else self.last_at.isoformat(),
            next_probe_in=next_in,
            prober=self.here,
            misleading=self.misses,
        )
