"""How an open breaker detects a recovery: recovery probes and its reactions to their answers.

While open, a recovery probe is due every ``probe_interval`` (jittered); a
:class:`~paytabs_guard.resilience.prober.BreakerProber` sends it (a request that can have no
effect) and reports with :meth:`RecoveryProbing.record_probe`; another instance's probe arrives
through :meth:`RecoveryProbing.apply_shared_probe`. An answer moves the breaker to half-open at
once, and real trial calls decide; a probe whose "up" the trials contradicted loses credibility
for a while (probes.py keeps that book).
"""

from __future__ import annotations

from paytabs_guard.resilience.breaker_core import _HALF_OPEN, _OPEN, BreakerCore
from paytabs_guard.resilience.events import EventType


class RecoveryProbing(BreakerCore):
    """The recovery probes of a :class:`~paytabs_guard.resilience.breaker.CircuitBreaker`
    (called by a BreakerProber and the shared-state listener, on the loop)."""

    __slots__ = ()

    def probe_due(self) -> bool:
        """Whether a recovery probe should be sent now (probes on, the breaker is looking for
        a recovery, its time has come)."""
        return self._looking() and self._clock() >= self._probes.next_at

    def next_probe_in(self) -> float | None:
        """Seconds until the next recovery probe is due; None when none is scheduled."""
        if not self._looking():
            return None
        return max(self._probes.next_at - self._clock(), 0.0)

    def next_look_in(self) -> float | None:
        """Seconds until a prober should ask :meth:`probe_due` again; None when only a state
        change (which it hears of) can make a probe due.

        Half-open, a probe can become due with no state change at all: the slots fill as
        trials are admitted, and trials a probe brought fall overdue as time passes. Neither
        is an event, so a prober that slept until the next one would miss a gateway that
        answered its probe and then hung until the trials' call timeout. While half-open it
        therefore looks again at the latest one probe interval on, or when the trials in
        flight fall overdue, if that comes first.
        """
        interval = self._probe_interval
        if interval is None:
            return None
        if self._looking():
            return max(self._probes.next_at - self._clock(), 0.0)
        if self._state is not _HALF_OPEN:
            return None
        probes = self._probes
        if probes.half_open_by_probe and self._trials_in_flight():
            overdue_in = probes.trials_at + probes.verdict_in() - self._clock()
            if overdue_in > 0.0:  # (past it, the slots are not all held: wait an interval)
                return min(interval, overdue_in)
        return interval

    def _looking(self) -> bool:
        """Open with probes on, or half-open with every trial slot held by a trial still in
        flight. The second case is the open period's own trial sent into a gateway that hangs:
        without probes it would hide a recovery for up to a call timeout (30 s by default).

        When a probe's answer brought the half-open, its trials left for a gateway known to
        answer: only once they are overdue by the probes' own answer time (``verdict_in``),
        counted from when the youngest of them left, does the breaker look again. Looking at
        once would send new trials while a gateway that is merely slow (slower than a probe
        interval) works through the first ones, at the cost of the probe's credibility;
        never looking would hide the recovery of a gateway that answered the probe and then
        hung, for a call timeout. (Trials presumed lost are still heard if they answer.)
        """
        if self._probe_interval is None:
            return False
        state = self._state
        if state is _OPEN:
            return True
        if state is not _HALF_OPEN or self._trials_in_flight() == 0:
            return False
        if self._slots_taken() < self._half_open_max:
            return False
        probes = self._probes
        return not probes.half_open_by_probe or (
            self._clock() - probes.trials_at > probes.verdict_in()
        )

    def skip_probe(self) -> None:
        """Another instance probes this breaker now: schedule ours one interval later."""
        now = self._clock()
        self._probes.reschedule(now)
        self._held_callers_wait(now)

    def _held_callers_wait(self, now: float) -> None:
        """Callers held for ``Prefer: wait`` are sales still waiting: each next probe is
        brought forward for them as for a caller turned away, without their waking to ask."""
        if self._waiters:
            self._waiting_for_a_verdict(now)

    def probe_sent(self) -> None:
        """A probe leaves now: the next one is due one (jittered) interval from now, whether
        or not this one has answered by then (a hanging gateway must not slow detection).

        While probes run they are the evidence: the open period's own trial (a real payment
        sent on a timer) waits for the reset timeout counted from the opening (spread below
        it, ``_safety_net``, so that instances that opened together do not send it together).
        That trial is the safety net for a probe path that is down while payments work; sent
        into an outage that hangs, it would hold the half-open slot past the recovery.
        """
        now = self._clock()
        self._probes.reschedule(now)
        self._held_callers_wait(now)
        if self._state is _OPEN and not self._probes.deferred:
            # (unless a probe already answered and its trial only waits out the back-off)
            self._retry_at = max(self._retry_at, self._since + self._safety_net)

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
        self._held_callers_wait(now)
        if succeeded:
            self._on_probe_answered(now, "shared_probe")
        else:
            self._on_probe_unanswered()

    def _on_probe_unanswered(self) -> None:
        """The gateway did not answer just now: a timer trial due in the next interval would
        be a real payment sent into an outage. Defer it past the next probe, but never beyond
        the (spread) reset timeout counted from the opening (in case only the probe's path is
        down)."""
        if self._state is _OPEN and self._probe_interval is not None:
            self._retry_at = max(self._retry_at, self._since + self._safety_net)

    def _on_probe_answered(self, now: float, reason: str) -> None:
        if self._state is _HALF_OPEN:
            if self._looking() and now >= self._probes.ready_at:
                # The trials in flight left before the gateway answered again and may hang for
                # a call timeout: presume them lost and let new trials take their slots (a late
                # success of theirs still counts; a late failure does not). If a probe's "up"
                # brought them, that probe did not see this outage (queries answer, payments
                # hang): it loses credibility as when its trials fail, so that in a partial
                # outage new trials go at the probes' back-off, not at probe speed.
                self._probes.trials_failed(now)
                self._presume_trials_lost()
                self._probes.half_open_by_probe = True
                self._probes.trials_at = now
                self._waiters.wake(self._half_open_max)
            return
        if self._state is not _OPEN:
            return
        if now < self._probes.ready_at:
            # Not credible yet: a real trial at the end of the back-off settles it.
            if self._probes.ready_at < self._retry_at:
                self._retry_at = self._probes.ready_at
                self._waiters.wake(len(self._waiters))  # held callers sleep until _retry_at
            self._probes.deferred = True
            return
        self._retry_at = now  # a trial is due at once
        self._probes.deferred = True
        self._transition(_HALF_OPEN, now, reason)
