"""The failed-verification limiter: window, expiry, bounded memory, and the source key."""

from __future__ import annotations

import ipaddress

import pytest

from paytabs_guard.entrypoints.api.rate_limit import FailureLimiter, source_key
from testkit.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(clock: FakeClock, **overrides: int) -> FailureLimiter:
    options = {"max_failures": 3, "window_seconds": 60, "max_keys": 100, **overrides}
    return FailureLimiter(
        options["max_failures"],
        options["window_seconds"],
        clock=clock.monotonic,
        max_keys=options["max_keys"],
    )


def test_a_source_is_blocked_at_max_failures_within_the_window(clock: FakeClock) -> None:
    limits = limiter(clock)
    for _ in range(2):
        limits.record_failure("a")
        clock.advance(10)
    assert not limits.is_blocked("a")
    limits.record_failure("a")
    assert limits.is_blocked("a")
    assert limits.retry_after("a") == pytest.approx(40)  # the first failure leaves at 1060


def test_failures_spread_wider_than_the_window_never_block(clock: FakeClock) -> None:
    limits = limiter(clock)
    for _ in range(10):
        limits.record_failure("a")
        clock.advance(30)
    assert not limits.is_blocked("a")


def test_a_block_expires_on_its_own(clock: FakeClock) -> None:
    limits = limiter(clock)
    for _ in range(3):
        limits.record_failure("a")
    clock.advance(59.999)
    assert limits.is_blocked("a")
    clock.advance(0.001)  # exactly window seconds after the oldest counted failure
    assert not limits.is_blocked("a")
    assert limits.retry_after("a") == 0.0


def test_a_source_that_keeps_failing_stays_blocked(clock: FakeClock) -> None:
    limits = limiter(clock)
    for _ in range(3):
        limits.record_failure("a")
    for _ in range(20):  # one failure every 5 s: always 3 within any 60 s
        clock.advance(5)
        limits.record_failure("a")
        assert limits.is_blocked("a")
    # The three latest failures were at 1090, 1095 and 1100: blocked until 1150.
    assert limits.retry_after("a") == pytest.approx(50)
    clock.advance(50)  # 1150
    assert not limits.is_blocked("a")


def test_sources_are_counted_separately(clock: FakeClock) -> None:
    limits = limiter(clock)
    for _ in range(3):
        limits.record_failure("attacker")
    assert limits.is_blocked("attacker")
    assert not limits.is_blocked("paytabs")


def test_only_failures_count(clock: FakeClock) -> None:
    # Nothing but record_failure changes state: checking a source, however often, never blocks it.
    limits = limiter(clock)
    for _ in range(1000):
        assert not limits.is_blocked("paytabs")
    assert len(limits) == 0


def test_memory_is_bounded_and_the_least_recent_source_is_evicted(clock: FakeClock) -> None:
    limits = limiter(clock, max_keys=100)
    for _ in range(3):
        limits.record_failure("old")
    for i in range(5000):
        limits.record_failure(f"spray-{i}")
        assert len(limits) <= 100
    assert len(limits) == 100
    assert not limits.is_blocked("old")  # evicted: documented cost of a bounded table


def test_a_recently_failing_source_survives_eviction(clock: FakeClock) -> None:
    limits = limiter(clock, max_keys=3)
    for name in ("a", "b", "c"):
        limits.record_failure(name)
    limits.record_failure("a")  # a becomes the most recent
    limits.record_failure("d")  # evicts b, the least recent
    limits.record_failure("a")
    assert limits.is_blocked("a")


def test_expired_sources_are_pruned(clock: FakeClock) -> None:
    limits = limiter(clock)
    for i in range(50):
        limits.record_failure(f"ip-{i}")
    clock.advance(61)
    limits.record_failure("fresh")
    assert len(limits) == 1


@pytest.mark.parametrize(
    "options",
    [{"max_failures": 0}, {"window_seconds": 0}, {"max_keys": 0}],
)
def test_invalid_settings_are_refused(clock: FakeClock, options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        limiter(clock, **options)


# --- source keys ----------------------------------------------------------------------------


def test_an_ipv4_client_is_its_own_key() -> None:
    assert source_key(ipaddress.ip_address("203.0.113.9")) == "203.0.113.9"


def test_a_mapped_client_shares_the_ipv4_key() -> None:
    assert source_key(ipaddress.ip_address("::ffff:203.0.113.9")) == "203.0.113.9"


def test_an_ipv6_client_is_keyed_by_its_64() -> None:
    first = source_key(ipaddress.ip_address("2001:db8:1:2::1"))
    other = source_key(ipaddress.ip_address("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    assert first == other == "2001:db8:1:2::/64"
    assert source_key(ipaddress.ip_address("2001:db8:1:3::1")) != first


def test_an_unknown_client_has_one_shared_key() -> None:
    assert source_key(None) == "unknown"
