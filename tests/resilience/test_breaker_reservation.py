"""Admission ahead of the call (``CircuitBreaker.reserve``): in half-open the trial slot is
taken when the caller is let in, the call uses it, and one left unused is given back.

``rejection_wait()`` only forecasts: a crowd asking at once is told "come in" by every free
slot, so the API stored payments it then had to turn away (found by review: 30 concurrent
creates at a half-open breaker with three slots stored 27 failed payments behind their 503s).
"""

from __future__ import annotations

import asyncio

import pytest
from breaker_support import Gate, Recorder, make_breaker, ok, settle, trip

from paytabs_guard.resilience import CircuitBreaker, CircuitOpenError, ManualClock

pytestmark = pytest.mark.anyio


async def half_open(clock: ManualClock, slots: int = 3) -> CircuitBreaker:
    """A breaker whose open period has ended: the next admission is a trial."""
    breaker = make_breaker(clock, half_open_max_calls=slots)
    await trip(breaker)
    clock.advance(30)  # the reset timeout: the open period is over
    return breaker


async def test_a_reservation_takes_the_slot_when_it_is_made() -> None:
    clock = ManualClock()
    breaker = await half_open(clock)
    held = [breaker.reserve() for _ in range(3)]
    assert breaker.state == "half_open"  # the first reservation was the trial that opened it
    assert breaker.rejection_wait() is not None  # every slot is taken, though nobody called
    with pytest.raises(CircuitOpenError) as fourth:
        breaker.reserve()
    assert fourth.value.retry_after_seconds > 0
    assert breaker.snapshot().lifetime.rejects == 1  # turned away, and counted as such
    assert breaker.snapshot().trials_in_flight == 3
    for reservation in held:
        reservation.release()


async def test_the_call_uses_the_reserved_slot_and_takes_no_other() -> None:
    clock = ManualClock()
    breaker = await half_open(clock)
    reservations = [breaker.reserve() for _ in range(3)]
    for reservation in reservations[:2]:
        with reservation:
            assert await breaker.call(ok) == "ok"  # not rejected: its slot was held for it
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)  # a call without a reservation finds the last slot held
    with reservations[2]:
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"  # three trials succeeded
    assert breaker.snapshot().lifetime.rejects == 1


async def test_only_the_first_call_in_the_block_is_the_reserved_trial() -> None:
    clock = ManualClock()
    breaker = await half_open(clock, slots=2)
    gate = Gate()
    with breaker.reserve():
        trial = asyncio.create_task(breaker.call(gate))
        await settle()
        other = breaker.reserve()  # the second slot, to someone else
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)  # a second call needs a slot of its own: none is free
    gate.release.set()
    assert await trial == "ok"
    other.release()
    assert breaker.snapshot().trials_in_flight == 0


async def test_an_unused_reservation_gives_its_slot_back_and_wakes_a_waiter() -> None:
    clock = ManualClock()
    breaker = await half_open(clock, slots=1)
    recorder = Recorder()
    breaker.subscribe(recorder)
    reservation = breaker.reserve()
    waiter = asyncio.create_task(breaker.wait_admitting(30.0))
    await settle()
    assert not waiter.done()
    with pytest.raises(KeyError), reservation:  # the request failed before it called
        raise KeyError("replayed")
    await settle()
    assert waiter.done()
    assert waiter.result() is True
    assert breaker.rejection_wait() is None
    with breaker.reserve():  # the slot is free for the next request
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert "failure" not in recorder.types  # giving back is neither a success nor a failure
    assert breaker.snapshot().lifetime.cancelled == 0


async def test_a_reservation_follows_the_call_into_a_task_started_in_its_block() -> None:
    clock = ManualClock()
    breaker = await half_open(clock, slots=1)
    with breaker.reserve():
        assert await asyncio.create_task(breaker.call(ok)) == "ok"
    assert breaker.state == "closed"


async def test_a_call_through_another_breaker_does_not_use_the_reservation() -> None:
    clock = ManualClock()
    breaker = await half_open(clock, slots=1)
    query = make_breaker(clock, "query", half_open_max_calls=1)
    await trip(query)
    clock.advance(30)
    with breaker.reserve():
        with query.reserve():
            assert await query.call(ok) == "ok"  # query's own trial
        assert await breaker.call(ok) == "ok"  # still create's reserved trial
    assert (breaker.state, query.state) == ("closed", "closed")


async def test_a_reservation_made_stale_by_a_state_change_holds_nothing() -> None:
    clock = ManualClock()
    breaker = await half_open(clock, slots=2)
    before_forced = breaker.reserve()
    breaker.force_open()  # an operator: a new generation
    with before_forced, pytest.raises(CircuitOpenError):
        await breaker.call(ok)  # forced open rejects it, reservation or not
    breaker.reset()
    await trip(breaker)
    clock.advance(30)
    before_close = breaker.reserve()
    breaker.reset()  # closed
    with before_close:
        assert await breaker.call(ok) == "ok"  # a plain closed call

    await trip(breaker)
    clock.advance(30)
    old = breaker.reserve()
    breaker.force_open()
    breaker.reset()
    await trip(breaker)
    clock.advance(30)
    fresh = [breaker.reserve(), breaker.reserve()]
    old.release()  # an old generation's give-back frees none of the new slots
    with pytest.raises(CircuitOpenError):
        breaker.reserve()
    for reservation in fresh:
        reservation.release()
    assert breaker.snapshot().trials_in_flight == 0


async def test_a_cancelled_reserved_trial_gives_its_slot_back() -> None:
    clock = ManualClock()
    breaker = await half_open(clock, slots=1)
    gate = Gate()
    with breaker.reserve():
        trial = asyncio.create_task(breaker.call(gate))
        await settle()
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
    assert breaker.rejection_wait() is None
    assert breaker.snapshot().lifetime.cancelled == 1


async def test_closed_reserves_nothing_and_open_turns_away() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock)
    with breaker.reserve():
        assert await breaker.call(ok) == "ok"
    await trip(breaker)
    with pytest.raises(CircuitOpenError) as rejected:
        breaker.reserve()
    assert rejected.value.retry_after_seconds == pytest.approx(30.0)
    assert breaker.state == "open"
    breaker.disable()
    with breaker.reserve():
        assert await breaker.call(ok) == "ok"
