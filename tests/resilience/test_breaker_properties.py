"""Property-based tests: the window against a brute-force model, half-open admission bounds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from breaker_support import Boom, make_breaker, settle, trip
from hypothesis import given, settings
from hypothesis import strategies as st

from paytabs_guard.resilience import CircuitBreaker, CircuitOpenError, ManualClock
from paytabs_guard.resilience.window import RollingWindow

# -- the rolling window ----------------------------------------------------------------------

STEPS = [0.0, 0.25, 0.5, 1.0, 2.5, 4.75, 9.75, 10.0, 15.0]  # exact in binary: boundaries are hit

operation = st.one_of(
    st.tuples(st.just("success"), st.sampled_from([0.0, 0.01, 0.5, 2.0])),
    st.tuples(st.just("failure"), st.sampled_from([0.0, 0.01, 0.5, 2.0])),
    st.tuples(st.just("timeout"), st.just(30.0)),
    st.tuples(st.just("reject"), st.just(0.0)),
    st.tuples(st.just("fallback"), st.just(0.0)),
    st.tuples(st.just("advance"), st.sampled_from(STEPS)),
    st.tuples(st.just("clear"), st.just(0.0)),
)


@dataclass
class Model:
    """What the window should hold: every record, filtered by bucket on demand."""

    width: float
    buckets: int
    tick: int
    records: list[tuple[int, str, float]] = field(default_factory=list)

    def record(self, now: float, kind: str, latency: float) -> None:
        self.tick = max(self.tick, int(now / self.width))
        self.records.append((self.tick, kind, latency))

    def live(self, now: float) -> list[tuple[int, str, float]]:
        self.tick = max(self.tick, int(now / self.width))
        return [r for r in self.records if r[0] > self.tick - self.buckets]

    def count(self, now: float, *kinds: str) -> int:
        return sum(1 for _, kind, _ in self.live(now) if kind in kinds)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from([(10.0, 10), (2.0, 4), (1.0, 1)]),
    operations=st.lists(operation, max_size=60),
    slow=st.sampled_from([None, 0.5]),
)
def test_the_window_matches_a_brute_force_model(
    shape: tuple[float, int], operations: list[tuple[str, float]], slow: float | None
) -> None:
    length, buckets = shape
    now = 1000.0
    window = RollingWindow(length, buckets, now=now, samples_per_bucket=1000, slow_threshold=slow)
    model = Model(length / buckets, buckets, int(now / (length / buckets)))
    for kind, value in operations:
        if kind == "advance":
            now += value
        elif kind == "clear":
            window.clear()
            model.records.clear()
        elif kind == "success":
            window.success(now, value)
            model.record(now, kind, value)
        elif kind in ("failure", "timeout"):
            window.failure(now, value, timed_out=kind == "timeout")
            model.record(now, kind, value)
        elif kind == "reject":
            window.reject(now)
            model.record(now, kind, value)
        else:
            window.fallback(now)
            model.record(now, kind, value)
    stats = window.stats(now)
    successes = model.count(now, "success")
    failures = model.count(now, "failure", "timeout")
    assert (stats.successes, stats.failures) == (successes, failures)
    assert stats.calls == successes + failures
    assert (window.calls, window.failures) == (stats.calls, stats.failures)  # running totals
    assert stats.timeouts == model.count(now, "timeout")
    assert stats.rejects == model.count(now, "reject")
    assert stats.fallbacks == model.count(now, "fallback")
    expected_rate = 100.0 * failures / stats.calls if stats.calls else 0.0
    assert stats.error_rate == expected_rate
    latencies = [
        lat for _, kind, lat in model.live(now) if kind in ("success", "failure", "timeout")
    ]
    if latencies:
        assert stats.latency_mean == pytest.approx(sum(latencies) / len(latencies))
        assert stats.latency_p99 == max(sorted(latencies)[: max(1, -(-99 * len(latencies) // 100))])
    else:
        assert stats.latency_mean is None
        assert stats.latency_p50 is None
    assert stats.slow_calls == (0 if slow is None else sum(1 for lat in latencies if lat >= slow))
    lifetime = window.lifetime(cancelled=0, opened=0)
    assert lifetime.calls >= stats.calls


# -- half-open admission ---------------------------------------------------------------------


class Probes:
    """A wrapped call whose every invocation waits for the test to decide its outcome.

    Counts the calls that entered while the breaker was half-open, i.e. the trials.
    """

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.waiting: list[tuple[asyncio.Event, list[bool]]] = []
        self.trials_running = 0
        self.max_trials_running = 0
        self.trials_entered = 0
        self.trials_cancelled = 0
        self.trials_failed = 0

    async def __call__(self) -> str:
        trial = self.breaker.state == "half_open"
        decided = asyncio.Event()
        fail: list[bool] = []
        self.waiting.append((decided, fail))
        if trial:
            self.trials_entered += 1
            self.trials_running += 1
            self.max_trials_running = max(self.max_trials_running, self.trials_running)
        try:
            await decided.wait()
        except asyncio.CancelledError:
            self.trials_cancelled += trial
            raise
        finally:
            self.trials_running -= trial
            if (decided, fail) in self.waiting:
                self.waiting.remove((decided, fail))
        if fail:
            self.trials_failed += trial
            raise Boom
        return "ok"

    def finish(self, index: int, *, failing: bool) -> None:
        decided, fail = self.waiting.pop(index % len(self.waiting))
        if failing:
            fail.append(True)
        decided.set()


action = st.one_of(
    st.tuples(st.just("arrive"), st.integers(1, 20)),
    st.tuples(st.just("succeed"), st.integers(0, 100)),
    st.tuples(st.just("fail"), st.integers(0, 100)),
    st.tuples(st.just("cancel"), st.integers(0, 100)),
    st.tuples(st.just("wait"), st.just(1)),  # 25 actions stay below the 30 s reset timeout
)


@settings(max_examples=150, deadline=None)
@given(
    allowed=st.integers(1, 4),
    first_wave=st.integers(1, 60),
    actions=st.lists(action, max_size=25),
)
def test_half_open_never_admits_more_trials_than_allowed(
    allowed: int, first_wave: int, actions: list[tuple[str, int]]
) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        breaker = make_breaker(clock, half_open_max_calls=allowed)
        await trip(breaker)
        clock.advance(30)
        probes = Probes(breaker)
        tasks: list[asyncio.Task[str]] = []

        def arrive(count: int) -> None:
            tasks.extend(asyncio.create_task(breaker.call(probes)) for _ in range(count))

        arrive(first_wave)
        await settle()
        assert probes.trials_entered == min(first_wave, allowed)
        for kind, value in actions:
            running = [task for task in tasks if not task.done()]
            if kind == "arrive":
                arrive(value)
            elif kind == "wait":
                clock.advance(value)
            elif kind == "cancel" and running:
                running[value % len(running)].cancel()
            elif kind in ("succeed", "fail") and probes.waiting:
                probes.finish(value, failing=kind == "fail")
            await settle()
            assert probes.max_trials_running <= allowed
            # A success keeps its slot; a cancelled trial, or a failed one that left the circuit
            # half-open (not enough evidence yet), gives it back.
            assert probes.trials_entered <= allowed + probes.trials_cancelled + probes.trials_failed
            if breaker.state == "half_open":
                assert breaker.snapshot().trials_in_flight == probes.trials_running
        for decided, _ in list(probes.waiting):
            decided.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(
            isinstance(result, str | Boom | CircuitOpenError | asyncio.CancelledError)
            for result in results
        )

    asyncio.run(scenario())
