"""The breaker's state machine: tripping, the window, half-open trials, manual control."""

from __future__ import annotations

import asyncio

import pytest
from breaker_support import (
    SEED,
    Boom,
    Declined,
    Gate,
    boom,
    fail,
    make_breaker,
    ok,
    only_booms,
    settle,
    succeed,
    trip,
)

from paytabs_guard.resilience import BreakerConfig, CircuitOpenError, ManualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# -- closed -> open --------------------------------------------------------------------------


async def test_a_new_breaker_is_closed_and_passes_results_through(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    assert breaker.state == "closed"
    assert await breaker.call(ok) == "ok"
    with pytest.raises(Boom):
        await breaker.call(boom)
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    ("successes", "failures", "opens"),
    [
        (5, 5, True),  # 5 / 10 = 50 %: exactly at the threshold opens (>=)
        (6, 5, False),  # 5 / 11 = 45.5 %: just below does not
        (0, 5, True),
        (95, 94, False),  # 49.7 %
    ],
)
async def test_the_threshold_is_inclusive(
    clock: ManualClock, successes: int, failures: int, opens: bool
) -> None:
    breaker = make_breaker(clock)
    await succeed(breaker, successes)
    await fail(breaker, failures)
    assert (breaker.state == "open") is opens


async def test_a_threshold_a_hair_above_the_rate_does_not_open(clock: ManualClock) -> None:
    at = make_breaker(clock, volume_threshold=2, error_threshold_percentage=50.0)
    above = make_breaker(clock, volume_threshold=2, error_threshold_percentage=50.01)
    for breaker in (at, above):
        await succeed(breaker)
        await fail(breaker)
    assert at.state == "open"
    assert above.state == "closed"


async def test_no_opening_below_the_volume_threshold(clock: ManualClock) -> None:
    breaker = make_breaker(clock)  # volume 5
    await fail(breaker, 4)
    assert breaker.state == "closed"  # 100 % errors, but only 4 calls
    await fail(breaker)
    assert breaker.state == "open"


async def test_a_success_that_brings_the_volume_up_does_not_open(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await fail(breaker, 4)
    await succeed(breaker)  # 4 / 5 = 80 % with the volume reached, but the gateway answered
    assert breaker.state == "closed"
    await fail(breaker)  # 5 / 6: the next failure opens it
    assert breaker.state == "open"


async def test_excused_exceptions_propagate_and_count_as_successes(clock: ManualClock) -> None:
    breaker = make_breaker(clock, is_failure=only_booms)

    async def declined() -> str:
        raise Declined("card declined")

    for _ in range(10):
        with pytest.raises(Declined):
            await breaker.call(declined)
    assert breaker.state == "closed"
    window = breaker.snapshot().window
    assert (window.successes, window.failures) == (10, 0)


# -- the window ------------------------------------------------------------------------------


async def test_failures_roll_out_of_the_window(clock: ManualClock) -> None:
    breaker = make_breaker(clock)  # 10 s window of 1 s buckets; clock starts at 1000.0
    await fail(breaker, 4)
    clock.advance(9.999)  # still in the 10th bucket from the one the failures landed in
    assert breaker.snapshot().window.failures == 4
    clock.advance(0.001)  # 1010.0: that bucket slides out
    assert breaker.snapshot().window.failures == 0
    await fail(breaker, 4)
    assert breaker.state == "closed"  # 4 in the window, not 8


async def test_failures_in_the_last_buckets_still_count(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await fail(breaker, 2)
    clock.advance(5)
    await fail(breaker, 2)
    clock.advance(4.5)
    await fail(breaker)  # 5 failures within 10 s
    assert breaker.state == "open"


@pytest.mark.parametrize("subscribed", [False, True])  # the inlined fast path and the full one
async def test_a_success_never_opens_the_breaker(clock: ManualClock, subscribed: bool) -> None:
    """Successes before a short outage age out of the window while its failures stay: the
    failed share crosses the threshold with no new failure. The gateway answering again must
    not be what opens the breaker (the chaos run saw it open 0.85 s after a recovery)."""
    breaker = make_breaker(clock)  # 10 s window of 1 s buckets, threshold 50 %, volume 5
    if subscribed:
        breaker.subscribe(lambda _event: None)
    await succeed(breaker, 6)
    clock.advance(5)
    await fail(breaker, 5)  # 5 of 11: under the threshold
    assert breaker.state == "closed"
    clock.advance(5)  # the six successes slide out; the failures stay
    await succeed(breaker)  # 5 failures of 6 calls, and the gateway answers
    assert breaker.state == "closed"
    assert breaker.snapshot().window.failures == 5
    await fail(breaker)  # the next failure is evidence: it opens
    assert breaker.state == "open"


async def test_rejected_calls_are_not_in_the_error_rate(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    called = False

    async def must_not_run() -> str:
        nonlocal called
        called = True
        return "ran"

    for _ in range(20):
        with pytest.raises(CircuitOpenError):
            await breaker.call(must_not_run)
    assert not called
    window = breaker.snapshot().window
    assert (window.calls, window.failures, window.rejects, window.error_rate) == (5, 5, 20, 100.0)


# -- open -> half-open -> closed / open -------------------------------------------------------


async def test_open_rejects_with_the_time_left(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.name == "create"
    assert rejected.value.retry_after_seconds == pytest.approx(20.0)
    assert "create" in str(rejected.value)
    assert rejected.value.__cause__ is None
    assert rejected.value.__context__ is None


async def test_half_open_comes_lazily_after_the_reset_timeout(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(29.999)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    clock.advance(0.001)
    assert breaker.state == "open"  # nothing happens without a call or a snapshot
    assert breaker.snapshot().state == "half_open"


async def test_a_successful_trial_closes_with_a_fresh_window(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(30)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    snapshot = breaker.snapshot()
    assert (snapshot.window.calls, snapshot.window.rejects) == (0, 0)
    assert snapshot.lifetime.calls == 6  # 5 failures and the trial
    await fail(breaker, 4)
    assert breaker.state == "closed"  # the old failures are gone


async def test_a_failed_trial_reopens_for_a_full_reset_timeout(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(30)
    with pytest.raises(Boom):
        await breaker.call(boom)
    assert breaker.state == "open"
    clock.advance(29)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.retry_after_seconds == pytest.approx(1.0)
    clock.advance(1)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"


async def test_an_excused_exception_in_a_trial_closes(clock: ManualClock) -> None:
    breaker = make_breaker(clock, is_failure=only_booms)
    await trip(breaker)
    clock.advance(30)

    async def declined() -> str:
        raise Declined

    with pytest.raises(Declined):
        await breaker.call(declined)
    assert breaker.state == "closed"


@pytest.mark.parametrize("allowed", [1, 3])
async def test_half_open_admits_exactly_the_allowed_trials(
    clock: ManualClock, allowed: int
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=allowed)
    await trip(breaker)
    clock.advance(30)
    gate = Gate()
    callers = [asyncio.create_task(breaker.call(gate)) for _ in range(50)]
    await settle()
    assert gate.entered == allowed
    assert breaker.state == "half_open"
    assert breaker.snapshot().trials_in_flight == allowed
    rejected = [task for task in callers if task.done()]
    assert len(rejected) == 50 - allowed
    assert all(isinstance(task.exception(), CircuitOpenError) for task in rejected)
    gate.release.set()
    results = await asyncio.gather(*(task for task in callers if task not in rejected))
    assert results == ["ok"] * allowed
    assert breaker.state == "closed"  # every trial succeeded


async def test_with_several_trials_one_failure_is_not_enough_evidence(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=3)
    await trip(breaker)
    clock.advance(30)
    await succeed(breaker, 2)
    with pytest.raises(Boom):
        await breaker.call(boom)
    assert breaker.state == "half_open"  # 1 failure in 3 trials is under the 50 % threshold
    await succeed(breaker)  # the failed trial's slot went to this one
    assert breaker.state == "closed"


async def test_with_several_trials_a_failed_share_at_the_threshold_reopens(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, half_open_max_calls=3)
    await trip(breaker)
    clock.advance(30)
    with pytest.raises(Boom):
        await breaker.call(boom)
    assert breaker.state == "half_open"
    with pytest.raises(Boom):
        await breaker.call(boom)
    assert breaker.state == "open"  # 2 failures over at least 3 trials: 67 % >= 50 %


async def test_a_cancelled_trial_frees_its_slot(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(30)
    gate = Gate()
    trial = asyncio.create_task(breaker.call(gate))
    await settle()
    assert gate.entered == 1
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)  # the one slot is taken
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert gate.cancelled == 1
    assert breaker.state == "half_open"
    snapshot = breaker.snapshot()
    assert snapshot.trials_in_flight == 0
    assert snapshot.lifetime.cancelled == 1
    assert snapshot.window.calls == 0  # the cancelled trial is neither success nor failure
    assert await breaker.call(ok) == "ok"  # the next caller gets the slot
    assert breaker.state == "closed"


async def test_a_trial_that_hangs_is_replaced_after_the_patience(clock: ManualClock) -> None:
    breaker = make_breaker(clock)  # no call timeout: patience = the reset timeout
    await trip(breaker)
    clock.advance(30)
    gate = Gate()
    stuck = asyncio.create_task(breaker.call(gate))
    await settle()
    clock.advance(29)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.retry_after_seconds == pytest.approx(1.0)
    clock.advance(1)
    assert await breaker.call(ok) == "ok"  # a new trial takes over
    assert breaker.state == "closed"
    gate.release.set()
    assert await stuck == "ok"  # the lost trial's late result changes nothing
    assert breaker.state == "closed"


async def test_a_late_failure_of_a_lost_trial_does_not_reopen(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    clock.advance(30)
    release = asyncio.Event()

    async def slow_boom() -> str:
        await release.wait()
        raise Boom

    stuck = asyncio.create_task(breaker.call(slow_boom))
    await settle()
    clock.advance(30)
    await succeed(breaker)
    release.set()
    with pytest.raises(Boom):
        await stuck
    assert breaker.state == "closed"


async def test_calls_admitted_before_opening_are_counted_but_decide_nothing(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock)
    gate = Gate()
    early = asyncio.create_task(breaker.call(gate))
    await settle()
    await trip(breaker)
    clock.advance(30)
    gate.release.set()
    assert await early == "ok"  # completes while the breaker is due for a trial
    assert breaker.state == "open"
    assert breaker.snapshot().window.successes == 1


# -- manual control --------------------------------------------------------------------------


async def test_force_open_rejects_until_reset(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    breaker.force_open()
    assert breaker.state == "forced_open"
    clock.advance(3600)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    # Only the operator knows when it ends: a cadence to look again at, not the reset timeout.
    assert rejected.value.retry_after_seconds == 5.0
    breaker.reset()
    assert breaker.state == "closed"
    assert await breaker.call(ok) == "ok"


async def test_force_closed_never_trips(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    breaker.force_closed()
    await fail(breaker, 50)
    assert breaker.state == "forced_closed"
    snapshot = breaker.snapshot()
    assert (snapshot.window.failures, snapshot.window.error_rate) == (50, 100.0)
    breaker.reset()
    await fail(breaker, 5)
    assert breaker.state == "open"


async def test_force_closed_from_open_admits_at_once(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    breaker.force_closed()
    assert await breaker.call(ok) == "ok"


async def test_disable_passes_everything_through_and_keeps_counting(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await trip(breaker)
    breaker.disable()
    assert breaker.state == "disabled"
    fallbacks = 0

    async def fallback(error: BaseException) -> str:
        nonlocal fallbacks
        fallbacks += 1
        return "fallback"

    for _ in range(20):
        with pytest.raises(Boom):
            await breaker.call(boom, fallback=fallback)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "disabled"
    assert fallbacks == 0
    window = breaker.snapshot().window
    assert (window.failures, window.successes) == (25, 1)
    breaker.reset()
    assert breaker.state == "closed"


async def test_reset_starts_a_fresh_window_but_keeps_lifetime_totals(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    await fail(breaker, 4)
    breaker.reset()  # closed -> closed: only the window is cleared
    await fail(breaker, 4)
    assert breaker.state == "closed"
    await fail(breaker)  # the fifth failure in the window
    assert breaker.state == "open"
    breaker.reset()
    snapshot = breaker.snapshot()
    assert snapshot.state == "closed"
    assert snapshot.window.calls == 0
    assert (snapshot.lifetime.failures, snapshot.lifetime.opened) == (9, 1)


async def test_manual_states_ignore_repeated_requests(clock: ManualClock) -> None:
    breaker = make_breaker(clock)
    for _ in range(2):
        breaker.force_open()
        breaker.force_closed()
        breaker.disable()
    assert breaker.state == "disabled"


# -- fallback --------------------------------------------------------------------------------


async def test_fallback_answers_rejections_and_failures_but_not_excused_errors(
    clock: ManualClock,
) -> None:
    breaker = make_breaker(clock, is_failure=only_booms)
    seen: list[type[BaseException]] = []

    async def fallback(error: BaseException) -> str:
        seen.append(type(error))
        return "cached"

    async def declined() -> str:
        raise Declined

    assert await breaker.call(boom, fallback=fallback) == "cached"
    with pytest.raises(Declined):
        await breaker.call(declined, fallback=fallback)
    await fail(breaker, 4)
    assert breaker.state == "open"
    assert await breaker.call(ok, fallback=fallback) == "cached"
    assert seen == [Boom, CircuitOpenError]
    assert breaker.snapshot().window.fallbacks == 2


async def test_a_failing_fallback_propagates_its_error(clock: ManualClock) -> None:
    breaker = make_breaker(clock)

    async def broken(error: BaseException) -> str:
        raise RuntimeError("no cache either") from error

    with pytest.raises(RuntimeError, match="no cache"):
        await breaker.call(boom, fallback=broken)
    await trip(breaker)
    with pytest.raises(RuntimeError) as raised:
        await breaker.call(ok, fallback=broken)
    assert isinstance(raised.value.__cause__, CircuitOpenError)


# -- slow calls and the decorator ------------------------------------------------------------


async def test_slow_calls_are_counted(clock: ManualClock) -> None:
    breaker = make_breaker(clock, slow_call_threshold=1.0)

    async def slow() -> str:
        clock.advance(2.0)
        return "late"

    assert await breaker.call(slow) == "late"
    await succeed(breaker)
    window = breaker.snapshot().window
    assert (window.slow_calls, window.successes, window.failures) == (1, 2, 0)


async def test_slow_calls_can_count_as_failures(clock: ManualClock) -> None:
    breaker = make_breaker(clock, slow_call_threshold=1.0, slow_call_is_failure=True)

    async def slow() -> str:
        clock.advance(1.0)
        return "late"

    for _ in range(5):
        assert await breaker.call(slow) == "late"  # the result still reaches the caller
    assert breaker.state == "open"
    assert breaker.snapshot().window.slow_calls == 5


async def test_protect_decorates_a_coroutine_function(clock: ManualClock) -> None:
    breaker = make_breaker(clock)

    @breaker.protect
    async def charge(amount: int, *, currency: str) -> str:
        if amount < 0:
            raise Boom
        return f"{amount} {currency}"

    assert await charge(10, currency="SAR") == "10 SAR"
    assert charge.__name__ == "charge"
    for _ in range(4):  # 4 failures of 5 calls
        with pytest.raises(Boom):
            await charge(-1, currency="SAR")
    with pytest.raises(CircuitOpenError):
        await charge(10, currency="SAR")


def test_a_breaker_is_named_in_its_repr() -> None:
    breaker = make_breaker(ManualClock(), name="query")
    assert repr(breaker) == "<CircuitBreaker 'query' closed>"
    assert breaker.config is SEED
    assert isinstance(breaker.config, BreakerConfig)
