"""What the breakers did lately: their state changes and probe verdicts, bounded in memory.

The snapshot says where a breaker stands now; an operator looking at an incident also wants to
see *when* it opened, how long it stayed open and what the probes said meanwhile. This keeps
the last ``limit`` entries per breaker (oldest dropped first) as a subscriber of the registry,
so it costs nothing on the call path beyond the events the breaker already emits to its other
subscribers. It is per process: another instance (or a restart) has its own history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from paytabs_guard.resilience.events import BreakerEvent, EventType

_STATE_CHANGES = frozenset(
    {EventType.OPENED, EventType.HALF_OPENED, EventType.CLOSED, EventType.DISABLED}
)
DEFAULT_LIMIT = 256


@dataclass(frozen=True, slots=True)
class StateChange:
    """The breaker entered ``state`` at ``at`` (from ``previous``, for ``reason``)."""

    at: datetime
    previous: str | None
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeVerdict:
    """A recovery probe's answer (``reason`` as the breaker reports it: succeeded, failed)."""

    at: datetime
    verdict: str


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of time in one state, for a chart."""

    start: datetime
    end: datetime
    state: str


class BreakerHistory:
    """Recent state changes and probe verdicts per breaker. Subscribe :meth:`record`."""

    def __init__(self, limit: int = DEFAULT_LIMIT, *, started: datetime | None = None) -> None:
        """``started``: when recording began; nothing is known before it, so no segment starts
        earlier (a chart would otherwise claim the breaker was closed for the whole hour
        before a restart)."""
        self._limit = limit
        self._started = started
        self._changes: dict[str, deque[StateChange]] = {}
        self._probes: dict[str, deque[ProbeVerdict]] = {}

    def record(self, event: BreakerEvent) -> None:
        """A registry subscriber: keeps state changes and probe verdicts, ignores the rest."""
        if event.type in _STATE_CHANGES:
            previous = event.previous_state.value if event.previous_state else None
            change = StateChange(event.timestamp, previous, event.state.value, event.reason or "")
            self._changes.setdefault(event.breaker, deque(maxlen=self._limit)).append(change)
        elif event.type is EventType.PROBE:
            verdict = ProbeVerdict(event.timestamp, event.reason or "unknown")
            self._probes.setdefault(event.breaker, deque(maxlen=self._limit)).append(verdict)

    def changes(self, breaker: str, since: datetime) -> list[StateChange]:
        return [change for change in self._changes.get(breaker, ()) if change.at >= since]

    def probes(self, breaker: str, since: datetime) -> list[ProbeVerdict]:
        return [probe for probe in self._probes.get(breaker, ()) if probe.at >= since]

    def segments(
        self, breaker: str, *, now: datetime, current: str, span: timedelta
    ) -> Sequence[Segment]:
        """The states ``breaker`` was in over the ``span`` before ``now``, oldest first.

        Before the first change kept in the span the breaker was in that change's previous
        state; with no change in the span it was in ``current`` throughout. The span starts
        no earlier than ``started``."""
        start = now - span if self._started is None else max(now - span, self._started)
        changes = self.changes(breaker, start)
        if not changes:
            return [Segment(start, now, current)]
        segments: list[Segment] = []
        state, since = changes[0].previous or changes[0].state, start
        for change in changes:
            if change.at > since:
                segments.append(Segment(since, min(change.at, now), state))
            state, since = change.state, max(change.at, start)
        if since < now:
            segments.append(Segment(since, now, state))
        return segments
