"""The breaker's configuration, its validation, the errors and the manual clock."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paytabs_guard.domain import Operation
from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerError,
    CallTimeout,
    CircuitOpenError,
    ManualClock,
    every_exception,
)
from paytabs_guard.resilience.window import RollingWindow


def test_the_defaults_are_the_seeds() -> None:
    config = BreakerConfig()
    assert config.call_timeout == 30.0
    assert config.error_threshold_percentage == 50.0
    assert config.reset_timeout == 30.0
    assert (config.rolling_window, config.rolling_buckets, config.bucket_width) == (10.0, 10, 1.0)
    assert config.volume_threshold == 5
    assert config.half_open_max_calls == 1
    assert config.is_failure is every_exception


def test_from_milliseconds_maps_the_seed_settings() -> None:
    def predicate(error: Exception) -> bool:
        return False

    config = BreakerConfig.from_milliseconds(
        timeout_ms=2500,
        error_threshold=25,
        reset_timeout_ms=60_000,
        rolling_timeout_ms=20_000,
        rolling_buckets=20,
        volume_threshold=10,
        half_open_max_calls=2,
        is_failure=predicate,
    )
    assert config == BreakerConfig(
        call_timeout=2.5,
        error_threshold_percentage=25,
        reset_timeout=60.0,
        rolling_window=20.0,
        rolling_buckets=20,
        volume_threshold=10,
        half_open_max_calls=2,
        is_failure=predicate,
    )
    assert BreakerConfig.from_milliseconds() == BreakerConfig()
    assert BreakerConfig.from_milliseconds(timeout_ms=0).call_timeout is None
    assert BreakerConfig.from_milliseconds(timeout_ms=None).call_timeout is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"call_timeout": 0}, "call_timeout"),
        ({"error_threshold_percentage": 0}, "error_threshold_percentage"),
        ({"error_threshold_percentage": 100.5}, "error_threshold_percentage"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": float("inf")}, "reset_timeout"),
        ({"rolling_window": -1}, "rolling_window"),
        ({"rolling_buckets": 0}, "rolling_buckets"),
        ({"volume_threshold": -1}, "volume_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"slow_call_threshold": 0}, "slow_call_threshold"),
        ({"latency_samples_per_bucket": 0}, "latency_samples_per_bucket"),
    ],
)
def test_invalid_settings_are_refused_by_name(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        replace(BreakerConfig(), **change)


def test_the_default_predicate_counts_every_exception() -> None:
    assert every_exception(ValueError())
    assert every_exception(TimeoutError())


def test_errors_carry_their_data_and_pickle() -> None:
    rejected = CircuitOpenError("create", 12.5)
    assert (rejected.name, rejected.retry_after_seconds) == ("create", 12.5)
    assert str(rejected) == "circuit 'create' is open; retry after 12.500 s"
    timed_out = CallTimeout("query", 30.0)
    assert (timed_out.name, timed_out.timeout_seconds) == ("query", 30.0)
    assert str(timed_out) == "call through circuit 'query' timed out after 30.000 s"
    assert issubclass(CircuitOpenError, BreakerError)
    assert issubclass(CallTimeout, BreakerError)
    copy = pickle.loads(pickle.dumps(rejected))  # noqa: S301 - our own bytes
    assert (type(copy), copy.args) == (CircuitOpenError, ("create", 12.5))
    # A breaker named by an enum (the service's Operation) reads as its name, not its repr:
    # "<Operation.QUERY: 'query'>" reached merchants in a /process answer.
    by_operation = CircuitOpenError(Operation.QUERY, 1.0)
    assert str(by_operation) == "circuit 'query' is open; retry after 1.000 s"


def test_the_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(50.0, wall_origin=datetime(2026, 5, 1, tzinfo=UTC))
    assert clock() == 50.0
    assert clock.wall() == datetime(2026, 5, 1, tzinfo=UTC)
    clock.advance(1.5)
    clock.set(60.0)
    assert clock() == 60.0
    assert clock.wall() == datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=10)
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="back"):
        clock.set(59.0)


def test_a_long_quiet_period_clears_the_whole_window_once() -> None:
    window = RollingWindow(10.0, 10, now=1000.0)
    for second in range(10):
        window.failure(1000.0 + second, 0.0)
    assert (window.calls, window.failures) == (10, 10)
    window.advance(1000.0 + 10**9)  # rotating costs at most one pass over the buckets
    assert (window.calls, window.failures) == (0, 0)
    assert window.lifetime(cancelled=0, opened=0).failures == 10
    assert window.length == 10.0


def test_a_window_with_one_bucket_is_a_tumbling_window() -> None:
    window = RollingWindow(5.0, 1, now=0.0)
    window.success(4.9, 0.0)
    assert window.stats(4.99).calls == 1
    assert window.stats(5.0).calls == 0
