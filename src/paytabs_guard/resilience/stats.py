"""The breaker's snapshot: frozen dataclasses with ``as_dict()`` for JSON.

Durations are seconds (floats), times are ISO 8601 strings in the wall clock's zone plus the
raw monotonic reading, so both humans and code comparing readings are served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(sorted_samples: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already-sorted samples (``None`` when there are none)."""
    if not sorted_samples:
        return None
    rank = math.ceil(p / 100 * len(sorted_samples))
    return sorted_samples[min(max(rank, 1), len(sorted_samples)) - 1]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What the rolling window holds right now.

    ``calls`` counts completed calls (``successes + failures``); ``timeouts`` is the subset of
    ``failures`` that hit the call timeout; ``slow_calls`` is orthogonal to both. Rejected calls
    are counted in ``rejects`` and are *not* part of ``error_rate`` (``100 * failures / calls``,
    0 when there were no calls). Latencies are over completed calls: the mean over all of them,
    the percentiles over each bucket's most recent samples.
    """

    seconds: float
    calls: int
    successes: int
    failures: int
    timeouts: int
    rejects: int
    fallbacks: int
    slow_calls: int
    error_rate: float
    latency_mean: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None


@dataclass(frozen=True, slots=True)
class LifetimeStats:
    """Totals since the breaker was created (``reset()`` does not clear them).

    ``cancelled`` counts calls abandoned by their caller (neither success nor failure);
    ``opened`` counts transitions into the open state.
    """

    calls: int
    successes: int
    failures: int
    timeouts: int
    rejects: int
    fallbacks: int
    slow_calls: int
    cancelled: int
    opened: int


@dataclass(frozen=True, slots=True)
class SharedStatus:
    """Whether breaker state is shared through Redis, and whether Redis answers.

    ``reachable`` is ``None`` when sharing is disabled or has not been tried yet.
    """

    enabled: bool
    reachable: bool | None = None
    last_error: str | None = None
    instance: str | None = None


SHARING_DISABLED = SharedStatus(enabled=False)


@dataclass(frozen=True, slots=True)
class ProbeStats:
    """The breaker's recovery probes.

    ``interval`` is the configured probe interval (``None``: probes off). ``sent``,
    ``succeeded`` and ``failed`` count this instance's own probes; ``last_result`` and
    ``last_at`` are the latest verdict, from this instance (``prober`` true) or from another
    one through shared state. ``next_probe_in`` is set while open. ``misleading`` counts probe
    answers in a row that real trial calls then contradicted (a partial outage).
    """

    interval: float | None = None
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    last_result: str | None = None
    last_at: str | None = None
    next_probe_in: float | None = None
    prober: bool = False
    misleading: int = 0


PROBES_OFF = ProbeStats()


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A point-in-time view of one breaker, as the stats and health endpoints report it.

    Attributes:
        name: The breaker's name.
        state: ``closed``, ``open``, ``half_open``, ``forced_open``, ``forced_closed`` or
            ``disabled``.
        since: When the breaker entered ``state`` (wall clock, ISO 8601).
        since_monotonic: The same moment on the breaker's monotonic clock.
        next_trial_at: When a trial call may next be admitted (wall clock, ISO 8601), for the
            open and half-open states; ``None`` otherwise.
        next_trial_in: Seconds until then (0 when due); ``None`` when not applicable.
        trials_in_flight: Half-open trial calls currently running.
        window: Counts, error rate and latencies over the rolling window.
        lifetime: Totals since creation.
        shared: Whether state sharing is enabled and Redis reachable.
        error_threshold_percentage: The configured trip threshold, for context.
        volume_threshold: The configured minimum volume, for context.
        probes: The recovery probes: schedule, counts, last verdict.
        degraded: Closed after trials that partly failed: PayTabs completes some calls, so the
            error rate does not open it (failures in a row and stalled calls still do) until a
            failure finds the rate under the threshold again.
    """

    name: str
    state: str
    since: str
    since_monotonic: float
    next_trial_at: str | None
    next_trial_in: float | None
    trials_in_flight: int
    window: WindowStats
    lifetime: LifetimeStats
    shared: SharedStatus
    error_threshold_percentage: float
    volume_threshold: int
    probes: ProbeStats = PROBES_OFF
    degraded: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (nested dicts for window, lifetime and shared)."""
        return asdict(self)
