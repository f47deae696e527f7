"""The rolling window: outcome counts in time buckets, rotated lazily from the clock.

There is no timer: every write and every read first works out which bucket ``now`` falls in
(``int(now / width)``) and clears the buckets that slid out since the last access. Running
totals of completed calls and failures are kept next to the buckets, so the breaker's trip
check is O(1); everything else is summed only when a snapshot is asked for.
"""

from __future__ import annotations

from array import array
from itertools import chain

from paytabs_guard.resilience.stats import LifetimeStats, WindowStats, percentile


class _Tally:
    """Outcome counters, for one bucket or for everything that has left the window."""

    __slots__ = (
        "failures",
        "fallbacks",
        "latency_count",
        "latency_sum",
        "rejects",
        "slow_calls",
        "successes",
        "timeouts",
    )

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.timeouts = 0
        self.rejects = 0
        self.fallbacks = 0
        self.slow_calls = 0
        self.latency_count = 0
        self.latency_sum = 0.0

    def add(self, other: _Tally) -> None:
        self.successes += other.successes
        self.failures += other.failures
        self.timeouts += other.timeouts
        self.rejects += other.rejects
        self.fallbacks += other.fallbacks
        self.slow_calls += other.slow_calls
        self.latency_count += other.latency_count
        self.latency_sum += other.latency_sum


class _Bucket(_Tally):
    """One slice of the window, with a ring of its most recent latencies."""

    __slots__ = ("samples",)

    def __init__(self, sample_size: int) -> None:
        super().__init__()
        # array('d') stores raw doubles: writing a sample allocates nothing.
        self.samples = array("d", bytes(8 * sample_size))

    def latencies(self) -> array[float]:
        return self.samples[: min(self.latency_count, len(self.samples))]


class RollingWindow:
    """Counts of completed, rejected and fallen-back calls over the last ``length`` seconds.

    The window covers the current bucket and the ``buckets - 1`` before it. A call is counted
    once, when it completes, in the bucket of its completion time. ``calls`` (successes plus
    failures) and ``failures`` are running totals over the live buckets.

    Not thread-safe: a breaker and its window belong to one event loop.
    """

    __slots__ = (
        "_buckets",
        "_current",
        "_retired",
        "_rotate_at",
        "_sample_size",
        "_size",
        "_slow_threshold",
        "_tick",
        "_width",
        "calls",
        "failures",
    )

    def __init__(
        self,
        length: float,
        buckets: int,
        *,
        now: float,
        samples_per_bucket: int = 128,
        slow_threshold: float | None = None,
    ) -> None:
        self._width = length / buckets
        self._size = buckets
        self._sample_size = samples_per_bucket
        self._slow_threshold = float("inf") if slow_threshold is None else slow_threshold
        self._buckets = [_Bucket(samples_per_bucket) for _ in range(buckets)]
        self._tick = int(now / self._width)
        self._current = self._buckets[self._tick % buckets]
        # Writes compare the clock with this float instead of computing a bucket index.
        self._rotate_at = (self._tick + 1) * self._width
        self._retired = _Tally()
        self.calls = 0
        self.failures = 0

    @property
    def length(self) -> float:
        """Seconds the window covers."""
        return self._width * self._size

    # -- writes (hot path) -------------------------------------------------------------------

    def success(self, now: float, latency: float) -> None:
        """Record a call that completed and counts as healthy."""
        if now >= self._rotate_at:
            self._rotate(now)
        bucket = self._current
        bucket.successes += 1
        self.calls += 1
        count = bucket.latency_count
        bucket.samples[count % self._sample_size] = latency
        bucket.latency_count = count + 1
        bucket.latency_sum += latency
        if latency >= self._slow_threshold:
            bucket.slow_calls += 1

    def failure(self, now: float, latency: float, *, timed_out: bool = False) -> None:
        """Record a call that completed as a failure (a timeout is a failure too)."""
        if now >= self._rotate_at:
            self._rotate(now)
        bucket = self._current
        bucket.failures += 1
        self.calls += 1
        self.failures += 1
        if timed_out:
            bucket.timeouts += 1
        count = bucket.latency_count
        bucket.samples[count % self._sample_size] = latency
        bucket.latency_count = count + 1
        bucket.latency_sum += latency
        if latency >= self._slow_threshold:
            bucket.slow_calls += 1

    def reject(self, now: float) -> None:
        """Record a call the breaker refused (not part of the error rate)."""
        if now >= self._rotate_at:
            self._rotate(now)
        self._current.rejects += 1

    def fallback(self, now: float) -> None:
        """Record a call answered by the fallback."""
        if now >= self._rotate_at:
            self._rotate(now)
        self._current.fallbacks += 1

    # -- maintenance -------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Drop the buckets that slid out of the window by ``now``."""
        if now >= self._rotate_at:
            self._rotate(now)

    def clear(self) -> None:
        """Start a fresh window; what it held still counts in the lifetime totals."""
        for bucket in self._buckets:
            self._retire(bucket)
        self.calls = 0
        self.failures = 0

    def _rotate(self, now: float) -> None:
        # now >= _rotate_at, so at least one step, whatever int() makes of a float boundary.
        tick = max(int(now / self._width), self._tick + 1)
        # Clear every bucket after the old current one up to the new one; after a long quiet
        # period that is all of them, never more.
        steps = min(tick - self._tick, self._size)
        buckets = self._buckets
        for step in range(tick - steps + 1, tick + 1):
            bucket = buckets[step % self._size]
            self.calls -= bucket.successes + bucket.failures
            self.failures -= bucket.failures
            self._retire(bucket)
        self._tick = tick
        self._current = buckets[tick % self._size]
        self._rotate_at = (tick + 1) * self._width

    def _retire(self, bucket: _Bucket) -> None:
        self._retired.add(bucket)
        bucket.successes = bucket.failures = bucket.timeouts = 0
        bucket.rejects = bucket.fallbacks = bucket.slow_calls = 0
        bucket.latency_count = 0
        bucket.latency_sum = 0.0

    # -- reads (off the hot path) ------------------------------------------------------------

    def _live(self) -> _Tally:
        total = _Tally()
        for bucket in self._buckets:
            total.add(bucket)
        return total

    def stats(self, now: float) -> WindowStats:
        """Counts, error rate and latency over the window as of ``now``."""
        self.advance(now)
        live = self._live()
        samples = sorted(chain.from_iterable(b.latencies() for b in self._buckets))
        calls = live.successes + live.failures
        return WindowStats(
            seconds=self.length,
            calls=calls,
            successes=live.successes,
            failures=live.failures,
            timeouts=live.timeouts,
            rejects=live.rejects,
            fallbacks=live.fallbacks,
            slow_calls=live.slow_calls,
            error_rate=100.0 * live.failures / calls if calls else 0.0,
            latency_mean=live.latency_sum / live.latency_count if live.latency_count else None,
            latency_p50=percentile(samples, 50),
            latency_p95=percentile(samples, 95),
            latency_p99=percentile(samples, 99),
        )

    def lifetime(self, *, cancelled: int, opened: int) -> LifetimeStats:
        """Totals since the window was created: what left the window plus what is in it."""
        total = _Tally()
        total.add(self._retired)
        total.add(self._live())
        return LifetimeStats(
            calls=total.successes + total.failures,
            successes=total.successes,
            failures=total.failures,
            timeouts=total.timeouts,
            rejects=total.rejects,
            fallbacks=total.fallbacks,
            slow_calls=total.slow_calls,
            cancelled=cancelled,
            opened=opened,
        )
