"""The breaker's configuration: one frozen dataclass, in seconds, validated on construction."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

FailurePredicate = Callable[[Exception], bool]
"""Says whether an exception raised by the protected call counts against the gateway's health."""


def every_exception(exc: Exception) -> bool:
    """Default failure predicate: every ``Exception`` the protected call raises is a failure."""
    return isinstance(exc, Exception)


def no_exception(exc: Exception) -> bool:
    """Default ``is_unanswered``: no exception says the gateway gave no answer at all."""
    return not isinstance(exc, Exception)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """How a :class:`~paytabs_guard.resilience.CircuitBreaker` decides. Durations are in seconds.

    The defaults are the seed's (``CIRCUIT_BREAKER_*``); :meth:`from_milliseconds` maps the seed's
    millisecond settings onto this class.

    Attributes:
        call_timeout: Each protected call is cancelled after this long and fails with
            :class:`~paytabs_guard.resilience.CallTimeout`; ``None`` disables the timeout.
        error_threshold_percentage: The circuit opens when the window's error rate is **at
            least** this (``>=``, as resilience4j, Polly and Hystrix do; opossum uses ``>``).
        reset_timeout: The longest the circuit stays open before it admits a trial call. With
            ``min_open_time`` set, the open period starts shorter and grows after each failed
            trial up to this bound; without it, every open period is exactly this long.
        rolling_window: Length of the window the error rate is computed over.
        rolling_buckets: Number of buckets the window is split into; the window slides by one
            bucket (``rolling_window / rolling_buckets``) at a time.
        volume_threshold: Minimum number of completed calls in the window before the error rate
            may open the circuit, so that one failure on a quiet window cannot.
        consecutive_failures: The circuit also opens after this many failures in a row, whatever
            the window's rate (Envoy's ``consecutive_5xx``). A gateway that goes down hard
            fails every call at once, but the rate needs the outage's failures to outweigh the
            window's successes from before it: with a 10 s window and a 50 % threshold, seconds
            of calls into a dead gateway. ``None``: the rate alone decides.
        half_open_max_calls: Trial calls admitted at once while half-open. The circuit closes
            on evidence: once that many trials have succeeded, while the failed share of the
            trials stays under the error threshold (counted over at least this many trials);
            it re-opens as soon as the failed share reaches the threshold. With 1, one success
            closes and one failure re-opens.
        min_open_time: The first open period after a trip; each consecutive failed trial
            doubles it, up to ``reset_timeout`` (Envoy's ejection time, resilience4j's
            exponential wait in open state). ``None``: always ``reset_timeout``.
        open_jitter: Each open period is multiplied by a random factor in
            ``[1 - open_jitter, 1 + open_jitter]`` (the top of the range cut to stay within
            ``reset_timeout``), so that breakers and instances that opened together never try
            again in lock step. With probes, the timer's trial waits for ``reset_timeout``
            times a factor in ``[1 - open_jitter, 1]``, drawn at each opening.
        probe_interval: While open, a recovery probe (a request that can have no effect) is
            due every this many seconds, randomised by ``open_jitter`` (at least 25 %); a
            probe that PayTabs answers moves the breaker to half-open at once. ``None``: no
            probes (a :class:`~paytabs_guard.resilience.prober.BreakerProber` runs them).
        stall_after: While closed, when at least ``volume_threshold`` calls have been in flight
            this long and not one call has been answered since the oldest of them left, the
            gateway has stopped answering: the breaker opens (reason ``stalled``) without
            waiting for their call timeout (``resilience/stall.py``). ``None``: off.
        slow_call_threshold: Calls taking at least this long are counted as slow (``None``: off).
        slow_call_is_failure: Count a slow call that succeeded as a failure.
        latency_samples_per_bucket: Size of each bucket's latency ring, the sample the snapshot's
            percentiles are computed from (the mean uses every call).
        is_failure: Classifies exceptions raised by the protected call. ``False`` means the call
            reached a healthy gateway (a decline, an invalid request): the exception propagates
            but counts as a success. Timeouts are always failures and are not passed here.
        is_unanswered: Says whether an exception (one ``is_failure`` counts) means the gateway
            gave no answer at all: the protected call's own timeout, shorter than
            ``call_timeout`` (an HTTP read timeout). Such a failure is judged as the breaker's
            timeout is: a timeout in the window, not an answer for the stall watch, and old
            news (not counted) when the gateway answered a call sent after it first.
    """

    call_timeout: float | None = 30.0
    error_threshold_percentage: float = 50.0
    reset_timeout: float = 30.0
    rolling_window: float = 10.0
    rolling_buckets: int = 10
    volume_threshold: int = 5
    consecutive_failures: int | None = None
    half_open_max_calls: int = 1
    min_open_time: float | None = None
    open_jitter: float = 0.0
    probe_interval: float | None = None
    stall_after: float | None = None
    slow_call_threshold: float | None = None
    slow_call_is_failure: bool = False
    latency_samples_per_bucket: int = 128
    is_failure: FailurePredicate = every_exception
    is_unanswered: FailurePredicate = no_exception

    def __post_init__(self) -> None:
        if self.call_timeout is not None and not self.call_timeout > 0:
            raise ValueError(f"call_timeout must be > 0 s or None, got {self.call_timeout!r}")
        if not 0 < self.error_threshold_percentage <= 100:
            raise ValueError(
                "error_threshold_percentage must be in (0, 100], "
                f"got {self.error_threshold_percentage!r}"
            )
        if not (self.reset_timeout > 0 and math.isfinite(self.reset_timeout)):
            raise ValueError(f"reset_timeout must be > 0 s, got {self.reset_timeout!r}")
        if not (self.rolling_window > 0 and math.isfinite(self.rolling_window)):
            raise ValueError(f"rolling_window must be > 0 s, got {self.rolling_window!r}")
        if self.rolling_buckets < 1:
            raise ValueError(f"rolling_buckets must be >= 1, got {self.rolling_buckets!r}")
        if self.volume_threshold < 0:
            raise ValueError(f"volume_threshold must be >= 0, got {self.volume_threshold!r}")
        if self.consecutive_failures is not None and self.consecutive_failures < 1:
            raise ValueError(
                f"consecutive_failures must be >= 1 or None, got {self.consecutive_failures!r}"
            )
        if self.half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be >= 1, got {self.half_open_max_calls!r}")
        if self.min_open_time is not None and not (
            self.min_open_time > 0 and math.isfinite(self.min_open_time)
        ):
            raise ValueError(f"min_open_time must be > 0 s or None, got {self.min_open_time!r}")
        if not 0 <= self.open_jitter < 1:
            raise ValueError(f"open_jitter must be in [0, 1), got {self.open_jitter!r}")
        if self.probe_interval is not None and not (
            self.probe_interval > 0 and math.isfinite(self.probe_interval)
        ):
            raise ValueError(f"probe_interval must be > 0 s or None, got {self.probe_interval!r}")
        if self.stall_after is not None and not (
            self.stall_after > 0 and math.isfinite(self.stall_after)
        ):
            raise ValueError(f"stall_after must be > 0 s or None, got {self.stall_after!r}")
        if self.slow_call_threshold is not None and not self.slow_call_threshold > 0:
            raise ValueError(
                f"slow_call_threshold must be > 0 s or None, got {self.slow_call_threshold!r}"
            )
        if self.latency_samples_per_bucket < 1:
            raise ValueError(
                f"latency_samples_per_bucket must be >= 1, got {self.latency_samples_per_bucket!r}"
            )

    def with_recovery(
        self,
        *,
        min_open_time: float | None,
        open_jitter: float,
        probe_interval: float | None,
        consecutive_failures: int | None = None,
        stall_after: float | None = None,
    ) -> BreakerConfig:
        """This config with the knobs beyond the seed's set: how fast a hard outage is seen
        (failures in a row, calls stalled) and how recovery is found (adaptive open period,
        jitter, probes)."""
        return replace(
            self,
            min_open_time=min_open_time,
            open_jitter=open_jitter,
            probe_interval=probe_interval,
            consecutive_failures=consecutive_failures,
            stall_after=stall_after,
        )

    @property
    def bucket_width(self) -> float:
        """Seconds covered by one bucket of the rolling window."""
        return self.rolling_window / self.rolling_buckets

    @classmethod
    def from_milliseconds(
        cls,
        *,
        timeout_ms: float | None = 30_000,
        error_threshold: float = 50,
        reset_timeout_ms: float = 30_000,
        rolling_timeout_ms: float = 10_000,
        rolling_buckets: int = 10,
        volume_threshold: int = 5,
        half_open_max_calls: int = 1,
        is_failure: FailurePredicate = every_exception,
        is_unanswered: FailurePredicate = no_exception,
    ) -> BreakerConfig:
        """Build a config from the seed's settings, which are in milliseconds.

        The parameters mirror ``CIRCUIT_BREAKER_TIMEOUT``, ``_ERROR_THRESHOLD``,
        ``_RESET_TIMEOUT``, ``_ROLLING_TIMEOUT``, ``_ROLLING_BUCKETS`` and
        ``_VOLUME_THRESHOLD``. A timeout of ``0`` or ``None`` disables the call timeout. Other
        fields can be set afterwards with :func:`dataclasses.replace`.
        """
        return cls(
            call_timeout=timeout_ms / 1000 if timeout_ms else None,
            error_threshold_percentage=error_threshold,
            reset_timeout=reset_timeout_ms / 1000,
            rolling_window=rolling_timeout_ms / 1000,
            rolling_buckets=rolling_buckets,
            volume_threshold=volume_threshold,
            half_open_max_calls=half_open_max_calls,
            is_failure=is_failure,
            is_unanswered=is_unanswered,
        )
