"""Events, the snapshot, and the registry."""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime

import pytest
from breaker_support import SEED, Boom, Recorder, boom, fail, make_breaker, ok, succeed, trip

from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerEvent,
    BreakerRegistry,
    BreakerState,
    CircuitOpenError,
    EventType,
    ManualClock,
)
from paytabs_guard.resilience.stats import percentile

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# -- events ----------------------------------------------------------------------------------


async def test_every_transition_and_outcome_is_an_event(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    recorder = Recorder()
    breaker.subscribe(recorder)
    await succeed(breaker)
    await fail(breaker, 5)  # 5 failures of 6 calls: opens at the 4th (4 / 5 = 80 %)
    clock.advance(30)
    await succeed(breaker)

    async def fallback(error: BaseException) -> str:
        return "fallback"

    await trip(breaker)
    assert await breaker.call(ok, fallback=fallback) == "fallback"
    assert recorder.types == [
        "success",
        "failure",
        "failure",
        "failure",
        "failure",
        "opened",
        "reject",
        "half_opened",
        "success",
        "closed",
        *["failure"] * 5,
        "opened",
        "reject",
        "fallback",
    ]
    opened = recorder.events[5]
    assert opened.type is EventType.OPENED
    assert (opened.state, opened.previous_state) == (BreakerState.OPEN, BreakerState.CLOSED)
    assert (opened.reason, opened.error_rate) == ("error_rate", 80.0)
    assert opened.breaker == "create"
    assert opened.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    half_opened = recorder.events[7]
    assert (half_opened.reason, half_opened.at) == ("reset_timeout", 1030.0)
    closed = recorder.events[9]
    assert (closed.reason, closed.previous_state) == ("trial_succeeded", BreakerState.HALF_OPEN)
    failure = recorder.events[1]
    assert failure.error_type == "breaker_support.Boom"
    assert failure.latency == 0.0
    reject = recorder.events[6]
    assert reject.error_type == "paytabs_guard.resilience.errors.CircuitOpenError"


async def test_manual_transitions_are_events_with_their_reason(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    recorder = Recorder()
    breaker.subscribe(recorder)
    breaker.force_open()
    breaker.force_closed()
    breaker.disable()
    breaker.reset()
    assert recorder.types == ["opened", "closed", "disabled", "closed"]
    assert [event.state.value for event in recorder.events] == [
        "forced_open",
        "forced_closed",
        "disabled",
        "closed",
    ]
    assert [event.reason for event in recorder.events] == ["forced", "forced", "disabled", "reset"]


async def test_a_failing_subscriber_never_breaks_the_call(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make_breaker(clock)
    recorder = Recorder()

    def broken(event: BreakerEvent) -> None:
        raise RuntimeError("metrics backend down")

    breaker.subscribe(broken)
    breaker.subscribe(recorder)
    with caplog.at_level(logging.ERROR, logger="paytabs_guard.resilience.events"):
        assert await breaker.call(ok) == "ok"
        with pytest.raises(Boom):
            await breaker.call(boom)
        await trip(breaker)
    assert recorder.types[:2] == ["success", "failure"]
    assert "opened" in recorder.types
    assert "metrics backend down" in caplog.text


async def test_unsubscribing_stops_delivery(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    recorder = Recorder()
    unsubscribe = breaker.subscribe(recorder)
    await succeed(breaker)
    unsubscribe()
    unsubscribe()  # idempotent
    await succeed(breaker)
    assert recorder.types == ["success"]


async def test_a_subscriber_may_unsubscribe_while_called(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    recorder = Recorder()

    def once(event: BreakerEvent) -> None:
        breaker.unsubscribe(once)

    breaker.subscribe(once)
    breaker.subscribe(recorder)
    await succeed(breaker, 2)
    assert recorder.types == ["success", "success"]


# -- snapshot --------------------------------------------------------------------------------


async def test_the_snapshot_counts_and_rates(clock: ManualClock) -> None:
    breaker = make_breaker(clock, volume_threshold=100)
    await succeed(breaker, 6)
    await fail(breaker, 2)
    snapshot = breaker.snapshot()
    assert snapshot.name == "create"
    assert snapshot.state == "closed"
    assert snapshot.next_trial_at is None
    assert snapshot.next_trial_in is None
    window = snapshot.window
    assert (window.calls, window.successes, window.failures) == (8, 6, 2)
    assert window.error_rate == 25.0
    assert window.seconds == 10.0
    assert snapshot.lifetime.calls == 8
    assert (snapshot.error_threshold_percentage, snapshot.volume_threshold) == (50.0, 100)
    assert snapshot.shared.enabled is False


async def test_latency_mean_and_percentiles_over_the_window(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    for milliseconds in range(1, 101):

        async def take(duration: float = milliseconds / 1000) -> str:
            clock.advance(duration)
            return "ok"

        await breaker.call(take)
    window = breaker.snapshot().window
    assert window.latency_mean == pytest.approx(0.0505)
    assert window.latency_p50 == pytest.approx(0.050)
    assert window.latency_p95 == pytest.approx(0.095)
    assert window.latency_p99 == pytest.approx(0.099)


async def test_percentiles_use_each_buckets_most_recent_samples(clock: ManualClock) -> None:
    breaker = make_breaker(clock, latency_samples_per_bucket=4)

    async def take(duration: float) -> str:
        clock.advance(duration)
        return "ok"

    for duration in (0.09, 0.09, 0.01, 0.01, 0.01, 0.01):  # all within one 1 s bucket
        await breaker.call(functools.partial(take, duration))
    window = breaker.snapshot().window
    assert window.latency_p99 == pytest.approx(0.01)  # the two slow ones were overwritten
    assert window.latency_mean == pytest.approx(0.22 / 6)  # the mean still counts every call


async def test_the_snapshot_of_an_open_breaker_says_when_it_tries_again(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(12)
    snapshot = breaker.snapshot()
    assert snapshot.state == "open"
    assert snapshot.since == "2026-01-01T00:00:00+00:00"
    assert snapshot.since_monotonic == 1000.0
    assert snapshot.next_trial_in == pytest.approx(18.0)
    assert snapshot.next_trial_at == "2026-01-01T00:00:30+00:00"
    clock.advance(18)
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.next_trial_in) == ("half_open", 0.0)


async def test_the_snapshot_is_json(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await fail(breaker, 10)
    document = json.loads(json.dumps(breaker.snapshot().as_dict()))
    assert document["state"] == "open"
    assert document["window"]["rejects"] == 5
    assert document["lifetime"]["opened"] == 1
    assert document["shared"] == {
        "enabled": False,
        "reachable": None,
        "last_error": None,
        "instance": None,
    }


async def test_lifetime_totals_survive_the_window(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await succeed(breaker, 3)
    clock.advance(60)
    await fail(breaker, 2)
    snapshot = breaker.snapshot()
    assert snapshot.window.calls == 2
    lifetime = snapshot.lifetime
    assert (lifetime.calls, lifetime.successes, lifetime.failures) == (5, 3, 2)


def test_nearest_rank_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0], 99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0


# -- registry --------------------------------------------------------------------------------


async def test_the_registry_creates_each_breaker_once(clock: ManualClock) -> None:
    config = BreakerConfig(call_timeout=None, volume_threshold=1)
    registry = BreakerRegistry(config, clock=clock, wall_clock=clock.wall)
    create = registry.get("create")
    assert registry.get("create") is create
    registry.get("query")
    assert registry.names() == ["create", "query"]
    assert [breaker.name for breaker in registry] == ["create", "query"]
    assert len(registry) == 2
    assert "query" in registry
    assert "token" not in registry
    assert registry["query"] is registry.get("query")
    with pytest.raises(KeyError):
        registry["token"]
    assert create.config is config is registry.config
    with pytest.raises(Boom):
        await create.call(boom)
    snapshots = registry.snapshot()
    assert snapshots["create"].state == "open"
    assert snapshots["query"].state == "closed"
    with pytest.raises(CircuitOpenError):
        await create.call(ok)
    assert await registry.get("query").call(ok) == "ok"  # one family's trouble stays its own


async def test_registry_subscribers_hear_every_breaker_present_and_future(
    clock: ManualClock,
) -> None:
    registry = BreakerRegistry(SEED, clock=clock, wall_clock=clock.wall)
    early = registry.get("create")
    recorder = Recorder()
    unsubscribe = registry.subscribe(recorder)
    late = registry.get("query")
    await succeed(early)
    await succeed(late)
    assert [event.breaker for event in recorder.events] == ["create", "query"]
    unsubscribe()
    await succeed(early)
    await succeed(registry.get("token"))
    assert len(recorder.events) == 2


def test_a_registry_defaults_to_the_seed_settings() -> None:
    registry = BreakerRegistry()
    assert registry.config == BreakerConfig()
    assert registry.get("create").snapshot().shared.enabled is False
