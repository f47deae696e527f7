"""Recovery detected, not waited for: probes, the adaptive open period, evidence, waiting.

Every test runs on a manual clock; the prober's core (``tick``) is driven by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace

import pytest
from breaker_support import SEED, Boom, Declined, Gate, make_breaker, ok, only_booms, settle, trip

from paytabs_guard.resilience import (
    BreakerEvent,
    BreakerProber,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    EventType,
    ManualClock,
    ProbeFn,
)
from paytabs_guard.resilience.prober import MAX_IN_FLIGHT

pytestmark = pytest.mark.anyio

PROBING = {"probe_interval": 1.0, "min_open_time": 2.0, "is_failure": only_booms}


class Gateway:
    """What the probe reaches: up (answers "not found"), down (raises Boom), or hanging."""

    def __init__(self) -> None:
        self.up = False
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        if not self.up:
            raise Boom("connection refused")
        raise Declined("transaction not found")  # an answer: the gateway is up


def probing(clock: ManualClock, seed: int = 1, **changes: object) -> CircuitBreaker:
    config = replace(SEED, **(PROBING | changes))  # type: ignore[arg-type]
    return make_breaker(clock, config=config, rng=random.Random(seed))


def probed(
    clock: ManualClock, probe: ProbeFn | None, seed: int = 1, **changes: object
) -> tuple[CircuitBreaker, BreakerProber]:
    """A registry's "create" breaker and a prober sending ``probe`` for it."""
    config = replace(SEED, **(PROBING | changes))  # type: ignore[arg-type]
    registry = BreakerRegistry(config, clock=clock, wall_clock=clock.wall, rng=random.Random(seed))
    breaker = registry.get("create")
    probes = {} if probe is None else {"create": probe}
    return breaker, BreakerProber(registry, probes, timeout=0.05, clock=clock)


def recorder(breaker: CircuitBreaker) -> list[BreakerEvent]:
    events: list[BreakerEvent] = []
    breaker.subscribe(events.append)
    return events


# -- the adaptive, randomised open period ---------------------------------------------------


async def test_the_open_period_starts_short_and_doubles_after_each_failed_trial() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, min_open_time=2.0)
    await trip(breaker)
    periods = []
    for _ in range(6):
        wait = breaker.rejection_wait()
        assert wait is not None
        periods.append(wait)
        clock.advance(wait)
        with pytest.raises(Boom):
            await breaker.call(_boom)  # the trial fails: open again, for longer
    assert periods == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # bounded by the reset timeout
    clock.advance(30)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    await trip(breaker)
    assert breaker.rejection_wait() == 2.0  # a recovery forgets the failed trials


async def test_without_min_open_time_every_open_period_is_the_reset_timeout() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock)
    await trip(breaker)
    assert breaker.rejection_wait() == 30.0


async def test_jitter_spreads_breakers_that_opened_together() -> None:
    clock = ManualClock()
    breakers = [
        make_breaker(clock, f"b{n}", rng=random.Random(n), min_open_time=2.0, open_jitter=0.2)
        for n in range(20)
    ]
    for breaker in breakers:
        await trip(breaker)
    waits = [breaker.rejection_wait() or 0.0 for breaker in breakers]
    assert all(1.6 <= wait <= 2.4 for wait in waits)
    assert len({round(wait, 6) for wait in waits}) == len(waits)  # no two in lock step


async def test_jitter_never_takes_the_open_period_past_the_reset_timeout() -> None:
    clock = ManualClock()
    for seed in range(30):
        breaker = make_breaker(clock, rng=random.Random(seed), min_open_time=20.0, open_jitter=0.5)
        await trip(breaker)
        for _ in range(3):
            wait = breaker.rejection_wait()
            assert wait is not None
            assert wait <= 30.0
            clock.advance(wait)
            with pytest.raises(Boom):
                await breaker.call(_boom)


async def test_open_periods_at_the_bound_are_spread_below_it_not_piled_on_it() -> None:
    # Once the doubling reaches the reset timeout, a spread clipped at the bound would put
    # half the breakers' trials exactly on it, together.
    clock = ManualClock()
    waits = []
    for seed in range(20):
        breaker = make_breaker(clock, rng=random.Random(seed), min_open_time=8.0, open_jitter=0.2)
        await trip(breaker)
        for _ in range(3):  # 8, 16, then the bound
            wait = breaker.rejection_wait()
            assert wait is not None
            clock.advance(wait)
            with pytest.raises(Boom):
                await breaker.call(_boom)
        wait = breaker.rejection_wait()
        assert wait is not None
        waits.append(wait)
    assert all(24.0 <= wait <= 30.0 for wait in waits)
    assert len({round(wait, 6) for wait in waits}) == len(waits)


async def test_with_probes_the_timer_trial_is_spread_below_the_reset_timeout() -> None:
    # Probes that go unanswered hold the open period's own trial (a real payment) back to the
    # reset timeout. Breakers that opened together must not then send it together: each
    # opening draws its own moment, below the bound, and draws again after a failed trial.
    firsts: list[float] = []
    seconds: list[float] = []
    for seed in range(8):
        clock = ManualClock()
        gateway = Gateway()
        breaker, prober = probed(clock, gateway.probe, seed=seed, open_jitter=0.2)
        await trip(breaker)
        for moments in (firsts, seconds):
            opened = clock()
            while breaker.rejection_wait() is not None:
                wait = await prober.tick()
                assert wait is not None
                due = breaker.rejection_wait()
                clock.advance(min(wait, due) if due is not None else 0.0)
            moments.append(clock() - opened)
            with pytest.raises(Boom):
                await breaker.call(_boom)  # the trial fails: open again
        assert gateway.probes > 40  # probes ran all along, unanswered
        await prober.aclose()
    for moments in (firsts, seconds):
        assert all(24.0 <= moment <= 30.0 for moment in moments), moments
        assert len({round(moment, 6) for moment in moments}) == len(moments)
    assert firsts != seconds


# -- half-open closes on evidence ------------------------------------------------------------


async def test_three_trials_close_on_a_success_ratio_not_on_one_lucky_call() -> None:
    clock = ManualClock()
    breaker = make_breaker(clock, half_open_max_calls=3)
    await trip(breaker)
    clock.advance(30)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "half_open"  # one success is not evidence
    with pytest.raises(Boom):
        await breaker.call(_boom)
    assert breaker.state == "half_open"
    assert await breaker.call(ok) == "ok"
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"


# -- probes ----------------------------------------------------------------------------------


async def test_an_answered_probe_moves_an_open_breaker_to_half_open_at_once() -> None:
    clock = ManualClock()
    gateway = Gateway()
    breaker, prober = probed(clock, gateway.probe)
    events = recorder(breaker)
    await trip(breaker)
    calls_before = breaker.snapshot().window.calls
    assert await prober.tick() is not None  # nothing due yet: the first probe is ~1 s away
    assert gateway.probes == 0
    clock.advance(1.25)  # the latest the jittered first probe can be due
    await prober.tick()
    assert gateway.probes == 1
    assert breaker.state == "open"  # still down
    gateway.up = True
    clock.advance(1.25)
    await prober.tick()
    assert breaker.state == "half_open"
    assert [e.reason for e in events if e.type is EventType.HALF_OPENED] == ["probe"]
    assert [e.reason for e in events if e.type is EventType.PROBE] == ["failed", "succeeded"]
    assert breaker.snapshot().window.calls == calls_before  # probes are not in the window
    probes = breaker.snapshot().probes
    assert (probes.sent, probes.succeeded, probes.failed) == (2, 1, 1)
    assert probes.last_result == "succeeded"
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    await prober.aclose()


async def test_probe_cadence_is_the_interval_spread_by_at_least_a_quarter() -> None:
    clock = ManualClock()
    gateway = Gateway()
    breaker, prober = probed(clock, gateway.probe, seed=7)
    await trip(breaker)
    gaps = []
    for _ in range(40):
        wait = await prober.tick()
        assert wait is not None
        gaps.append(wait)
        clock.advance(wait)
    assert all(0.75 <= gap <= 1.25 for gap in gaps[1:])
    assert max(gaps) - min(gaps) > 0.2  # spread, not a fixed beat
    assert gateway.probes >= 39
    await prober.aclose()


async def test_a_probe_that_hangs_counts_as_no_answer() -> None:
    clock = ManualClock()
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    breaker, prober = probed(clock, hang)
    await trip(breaker)
    clock.advance(1.25)
    await prober.tick()
    assert breaker.snapshot().probes.failed == 1
    assert breaker.state == "open"
    await prober.aclose()


class Lease:
    """The prober's lease port in memory: who holds it, and the lifetimes asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []

    async def acquire_prober(self, name: str, ttl: float) -> bool:
        self.asked.append((name, ttl))
        return True

    async def release_prober(self, name: str) -> None:
        pass


async def test_the_probe_lease_lapses_three_intervals_after_its_holder_stops() -> None:
    # A holder that dies must be replaced within three probe intervals, not a probe timeout
    # later: meanwhile no instance probes, and a recovery waits for the timer's trial.
    clock = ManualClock()
    gateway = Gateway()
    config = replace(SEED, **PROBING)  # type: ignore[arg-type]
    registry = BreakerRegistry(config, clock=clock, wall_clock=clock.wall, rng=random.Random(3))
    breaker = registry.get("create")
    lease = Lease()
    prober = BreakerProber(
        registry, {"create": gateway.probe}, timeout=30.0, lease=lease, clock=clock
    )
    await trip(breaker)
    for _ in range(3):
        wait = await prober.tick()
        assert wait is not None
        clock.advance(wait)
    assert gateway.probes >= 2
    assert lease.asked
    assert {name for name, _ in lease.asked} == {"create"}
    assert all(ttl == pytest.approx(3.0) for _, ttl in lease.asked)
    await prober.aclose()


async def test_probes_off_leave_the_open_period_alone() -> None:
    clock = ManualClock()
    gateway = Gateway()
    breaker, prober = probed(clock, gateway.probe, probe_interval=None)
    await trip(breaker)
    assert await prober.tick() is None
    clock.advance(1.9)
    assert await prober.tick() is None
    assert gateway.probes == 0
    assert breaker.snapshot().probes.interval is None
    await prober.aclose()


async def test_a_partial_outage_cannot_make_the_breaker_flap_at_probe_speed() -> None:
    """Queries answer while payments fail: probes say "up", trials say "down"."""
    clock = ManualClock()
    breaker = probing(clock, reset_timeout=30.0)
    await trip(breaker)
    trials = 0
    started = clock()
    while clock() - started < 60:
        clock.advance(0.05)
        if breaker.probe_due():
            breaker.probe_sent()
            breaker.record_probe(succeeded=True)  # the query path answers
        try:
            await breaker.call(_boom)  # a create: the create path is down
            trials += 1
        except Boom:
            trials += 1
        except CircuitOpenError:
            pass
    # Without the back-off: one trial per probe, about 60. With it: the misleading probe is
    # believed only every four intervals at most.
    assert trials <= 20
    assert breaker.snapshot().probes.misleading >= 3
    # Sales turned away hurry the probes, but not while their "up" is not believed: that
    # would find nothing sooner and send the gateway four times the probes (about 240).
    assert breaker.snapshot().probes.sent <= 80


async def test_after_a_partial_outage_recovery_is_still_found_within_seconds() -> None:
    clock = ManualClock()
    breaker = probing(clock, reset_timeout=30.0)
    await trip(breaker)
    for _ in range(400):  # 20 s of create-only outage
        clock.advance(0.05)
        if breaker.probe_due():
            breaker.probe_sent()
            breaker.record_probe(succeeded=True)
        with contextlib.suppress(Boom, CircuitOpenError):
            await breaker.call(_boom)
    recovered_at = clock()
    while breaker.state != "closed":
        clock.advance(0.05)
        if breaker.probe_due():
            breaker.probe_sent()
            breaker.record_probe(succeeded=True)
        with contextlib.suppress(CircuitOpenError):
            await breaker.call(ok)
    assert clock() - recovered_at <= 5.5  # four probe intervals of back-off, plus a probe


async def test_retry_after_is_the_next_probes_verdict_when_that_comes_first() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)  # open period: the full 30 s
    await trip(breaker)
    next_probe = breaker.next_probe_in()
    assert next_probe is not None
    assert 0.75 <= next_probe <= 1.25
    wait = breaker.rejection_wait()
    # Not when the probe leaves but when its answer is in: 1.5 x the assumed 0.2 s answer time
    # (no probe has been answered yet), so a caller sent back does not find it still open.
    assert wait == pytest.approx(next_probe + 0.3)
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    # The call turned away brought that probe forward, and is told of the one it brought.
    assert breaker.next_probe_in() == pytest.approx(0.25 * next_probe)
    assert rejected.value.retry_after_seconds == pytest.approx(0.25 * next_probe + 0.3)
    assert breaker.rejection_wait() == pytest.approx(rejected.value.retry_after_seconds)


# -- probes hurried by the sales they keep waiting ------------------------------------------


async def test_a_sale_turned_away_brings_the_next_probe_forward_once() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)
    await trip(breaker)
    gap = breaker.next_probe_in()
    assert gap is not None
    clock.advance(0.3 * gap)
    assert not breaker.probe_due()  # nobody waits: the probe keeps to its interval
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    assert breaker.probe_due()  # a quarter of the interval since the opening has passed
    breaker.probe_sent()
    breaker.record_probe(succeeded=False)
    following = breaker.next_probe_in()
    assert following is not None
    assert 0.75 <= following <= 1.25
    for _ in range(50):  # a crowd: the first one hurries the probe, the rest find it done
        with pytest.raises(CircuitOpenError) as rejected:
            await breaker.call(ok)
    assert breaker.next_probe_in() == pytest.approx(0.25 * following)
    assert rejected.value.retry_after_seconds == pytest.approx(0.25 * following + 0.3)


async def test_a_held_sale_brings_the_next_probe_forward_too() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)
    await trip(breaker)
    gap = breaker.next_probe_in()
    assert gap is not None
    waiter = asyncio.create_task(breaker.wait_admitting(30.0))
    await settle()
    assert breaker.next_probe_in() == pytest.approx(0.25 * gap)
    breaker.record_probe(succeeded=True)
    assert await asyncio.wait_for(waiter, 1.0) is True


async def test_held_sales_hurry_every_probe_without_waking_to_ask() -> None:
    # A held caller sleeps on its future, not on a timer that rings at each probe's verdict:
    # 500 held sales once cost 2.5 wake-ups a second each. They still count as sales waiting,
    # so each next probe is brought forward for them, and they sleep until the only moment
    # time alone can let them in: the timer's trial.
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None, reset_timeout=30.0)
    await trip(breaker)
    held = [asyncio.create_task(breaker.wait_admitting(60.0)) for _ in range(3)]
    await settle()
    for _ in range(5):  # five probes go unanswered while the sales wait
        due = breaker.next_probe_in()
        assert due is not None
        clock.advance(due)
        breaker.probe_sent()
        breaker.record_probe(succeeded=False)
        gap = breaker.next_probe_in()
        assert gap is not None
        assert gap <= 0.25 * 1.25 + 1e-9  # a quarter of the (spread) interval
        sleep = breaker._held_wait()
        assert sleep is not None
        assert sleep == pytest.approx(30.0 - (clock() - breaker.snapshot().since_monotonic))
    assert not any(task.done() for task in held)
    breaker.record_probe(succeeded=True)  # the gateway answers: half-open, one trial slot
    await settle()
    assert [task.done() for task in held] == [True, False, False]  # oldest first
    assert await breaker.call(ok) == "ok"
    await settle()
    assert all(task.done() and task.result() for task in held)


async def test_probes_come_four_times_as_often_while_sales_wait_and_no_more() -> None:
    clock = ManualClock()
    gateway = Gateway()
    breaker, prober = probed(clock, gateway.probe, min_open_time=None, reset_timeout=300.0)
    await trip(breaker)
    turned_away = 0

    async def outage(seconds: float, sales_every: float | None) -> int:
        nonlocal turned_away
        sent = gateway.probes
        sale_at = clock()
        end = clock() + seconds
        while clock() < end:
            clock.advance(0.01)
            if sales_every is not None and clock() >= sale_at:
                sale_at += sales_every
                with pytest.raises(CircuitOpenError):
                    await breaker.call(ok)
                turned_away += 1
            await prober.tick()
        return gateway.probes - sent

    quiet = await outage(60.0, None)
    assert 48 <= quiet <= 80  # one a second (spread by a quarter)
    busy = await outage(60.0, 0.02)  # fifty sales a second turned away
    assert 4 * 48 <= busy <= 4 * 80
    turned_away = 0
    sparse = await outage(60.0, 3.0)  # a sale every three seconds
    assert sparse <= quiet + turned_away  # never more probes than sales turned away
    assert breaker.state == "open"
    await prober.aclose()


async def asleep_past_a_quarter(
    clock: ManualClock, probe: ProbeFn
) -> tuple[CircuitBreaker, BreakerProber]:
    """An open breaker whose running prober sleeps until a probe many seconds of real time
    away (a long interval), with the clock moved past a quarter of that interval: a probe
    brought forward is due at once, one at the quiet pace long after the test gives up."""
    breaker, prober = probed(clock, probe, probe_interval=30.0, min_open_time=None)
    await trip(breaker)
    gap = breaker.next_probe_in()
    assert gap is not None
    assert gap >= 10.0
    prober.start()
    await settle()
    clock.advance(0.3 * gap)  # past a quarter of the interval, long before the whole
    return breaker, prober


async def test_the_prober_wakes_for_a_probe_a_held_sale_brought_forward() -> None:
    """A sale held for ``Prefer: wait`` is never rejected, so no reject event tells the prober;
    the probe it brought forward must still leave on time."""
    clock = ManualClock()
    sent = asyncio.Event()

    async def probe() -> None:
        sent.set()
        raise Declined("transaction not found")  # PayTabs answers: it is back

    breaker, prober = await asleep_past_a_quarter(clock, probe)
    held = asyncio.create_task(breaker.wait_admitting(30.0))
    await asyncio.wait_for(sent.wait(), 5.0)
    assert await asyncio.wait_for(held, 5.0) is True  # the probe's answer let it through
    await prober.aclose()


async def test_hurried_probes_are_never_closer_than_the_shortest_interval() -> None:
    clock = ManualClock()
    breaker = probing(clock, probe_interval=0.1, min_open_time=None)
    await trip(breaker)
    breaker.probe_sent()
    breaker.record_probe(succeeded=False)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    # A quarter of 75-125 ms would be under 50 ms: twenty probes a second is the most.
    assert breaker.next_probe_in() == pytest.approx(0.05)


async def test_the_prober_wakes_for_a_probe_a_turned_away_sale_brought_forward() -> None:
    clock = ManualClock()
    sent = asyncio.Event()
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        sent.set()
        raise Boom("connection refused")

    breaker, prober = await asleep_past_a_quarter(clock, probe)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)
    await asyncio.wait_for(sent.wait(), 5.0)
    for _ in range(200):  # more sales before the clock moves: no further probe
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
    await settle()
    assert probes == 1
    await prober.aclose()


async def test_the_verdict_time_follows_the_probes_answers() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)
    for latency in (0.04, 0.04, 0.1):  # three outages, each found by a probe answered so fast
        await trip(breaker)
        clock.advance(breaker.next_probe_in() or 0.0)
        breaker.probe_sent()
        breaker.record_probe(succeeded=True, latency=latency)
        for _ in range(3):
            await breaker.call(ok)  # the trials close it
        assert breaker.state == "closed"
    await trip(breaker)
    next_probe = breaker.next_probe_in()
    assert next_probe is not None
    smoothed = 0.7 * 0.04 + 0.3 * 0.1  # one slow answer moves the estimate, not to itself
    assert breaker.rejection_wait() == pytest.approx(next_probe + 1.5 * smoothed)


async def test_a_probe_verdict_from_another_instance_is_acted_on() -> None:
    clock = ManualClock()
    breaker = probing(clock)
    await trip(breaker)
    breaker.apply_shared_probe(succeeded=False)
    assert breaker.state == "open"
    breaker.apply_shared_probe(succeeded=True)
    assert breaker.state == "half_open"
    probes = breaker.snapshot().probes
    assert probes.sent == 0  # not ours
    assert (probes.last_result, probes.prober) == ("succeeded", False)


# -- waiting for admission -------------------------------------------------------------------


async def test_a_waiter_wakes_the_moment_a_probe_opens_the_door() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)
    await trip(breaker)
    waiter = asyncio.create_task(breaker.wait_admitting(30.0))
    await settle()
    assert not waiter.done()
    breaker.record_probe(succeeded=True)
    assert await asyncio.wait_for(waiter, 1.0) is True
    assert await breaker.call(ok) == "ok"


async def test_a_waiter_gives_up_after_its_wait() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)
    await trip(breaker)
    assert await breaker.wait_admitting(0.01) is False


async def test_waiters_beyond_the_trial_slots_keep_waiting_until_the_close() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None)
    await trip(breaker)
    waiters = [asyncio.create_task(breaker.wait_admitting(30.0)) for _ in range(5)]
    await settle()
    breaker.record_probe(succeeded=True)  # half-open with one trial slot
    await settle()
    assert sum(w.done() for w in waiters) == 1
    assert await breaker.call(ok) == "ok"  # the trial closes the breaker
    await settle()
    assert all(w.done() and w.result() for w in waiters)


async def test_held_callers_that_find_the_timer_trial_due_take_only_the_trial_slots() -> None:
    """The end of the open period lets no held caller in by a state change (the move to
    half-open is lazy): each wakes on its own, and every one used to find "a trial is due"
    and leave, while only the trial slots' worth could be let through. The rest were turned
    away at once (an outside run: 37 of 40 creates held with ``Prefer: wait=20`` got a 503
    a second after PayTabs was back, with probes off)."""
    clock = ManualClock()
    breaker = probing(clock, min_open_time=None, reset_timeout=5.0, half_open_max_calls=2)
    await trip(breaker)
    clock.advance(5.0)  # the open period is over: a trial is due, nothing has moved yet
    held = [asyncio.create_task(breaker.wait_admitting(30.0)) for _ in range(5)]
    await settle()
    assert sum(waiter.done() for waiter in held) == 2  # one per trial slot
    gate = Gate()
    trials = [asyncio.create_task(breaker.call(gate)) for _ in range(2)]
    await settle()
    assert breaker.state == "half_open"
    assert sum(waiter.done() for waiter in held) == 2  # both slots taken: the rest wait
    gate.release.set()
    assert await asyncio.gather(*trials) == ["ok", "ok"]
    await settle()
    assert breaker.state == "closed"
    assert all(waiter.done() and waiter.result() for waiter in held)


async def _boom() -> str:
    raise Boom("gateway down")


async def test_an_unanswered_probe_defers_the_timer_trial_but_not_past_the_reset_timeout() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=2.0, reset_timeout=5.0)
    events = recorder(breaker)
    await trip(breaker)
    opened = clock()
    while clock() - opened < 6.0:  # the gateway stays down: every probe goes unanswered
        clock.advance(0.05)
        if breaker.probe_due():
            breaker.probe_sent()
            breaker.record_probe(succeeded=False)
        with contextlib.suppress(CircuitOpenError, Boom):
            await breaker.call(_boom)
    trials = [e.at - opened for e in events if e.type is EventType.HALF_OPENED]
    # Without the deferral the first timer trial comes at 2 s (min_open_time); with it, not
    # while probes say "down" - until the reset timeout since the opening.
    assert trials
    assert trials[0] >= 4.9


async def test_a_hanging_probe_does_not_hold_the_next_one_back() -> None:
    clock = ManualClock()
    release = asyncio.Event()
    sent = 0

    async def slow() -> None:
        nonlocal sent
        sent += 1
        await release.wait()

    breaker, prober = probed(clock, slow)
    prober._timeout = 30.0  # the probe may hang for long
    await trip(breaker)
    clock.advance(1.25)
    started = prober._start_due()
    await settle()
    clock.advance(1.25)
    started += prober._start_due()
    await settle()
    assert sent == 2  # the second went out while the first still hung
    release.set()
    await asyncio.gather(*started)
    await prober.aclose()


async def test_probes_hurried_into_a_hang_still_leave_on_time() -> None:
    """A gateway that hangs holds each probe until the timeout (3 s here). While sales wait,
    probes go four a second, so enough may be in flight for one to leave every hurried gap:
    else the probes sent into the hang would hold every slot past the recovery."""
    clock = ManualClock()
    release = asyncio.Event()
    sent = 0

    async def hang() -> None:
        nonlocal sent
        sent += 1
        await release.wait()

    breaker, prober = probed(clock, hang, min_open_time=None)
    prober._timeout = 3.0  # the probes' own timeout, as a real call's
    await trip(breaker)
    started = []
    for _ in range(300):  # 3 s, a sale turned away every 10 ms
        clock.advance(0.01)
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
        started += prober._start_due()  # the tick, without awaiting the hang
        await settle()  # the probes start (and hang)
    assert sent >= 10  # one every 250 ms (spread), all still hanging; not 4 and then none
    release.set()
    await asyncio.gather(*started)
    await prober.aclose()


async def test_with_a_long_call_timeout_a_recovery_after_a_hang_is_seen_within_a_second() -> None:
    """The default call timeout (27 s) and a gateway that hangs for 40 s while sales wait: the
    ten probes in flight hung for their whole timeout, no probe left meanwhile, and the
    recovery was seen up to 27 s late (an audit saw 14-21 s). The oldest probe now gives way
    once it has waited PROBE_PATIENCE, so a probe keeps leaving and one finds the recovery."""
    clock = ManualClock()
    hanging = True
    release = asyncio.Event()
    sent = 0

    async def gateway() -> None:
        nonlocal sent
        sent += 1
        if hanging:
            await release.wait()  # never released: the gateway holds it until it is given up

    # (the open period's own timer trial kept out of it: probes alone must find the recovery)
    breaker, prober = probed(clock, gateway, min_open_time=None, reset_timeout=120.0)
    prober._timeout = 27.0
    await trip(breaker)
    opened = clock()
    started: list[asyncio.Task[None]] = []
    recovered_at = None
    for _ in range(6000):  # 60 s, a sale turned away every 10 ms while the breaker is open
        clock.advance(0.01)
        if hanging and clock() - opened >= 40.0:
            hanging, recovered_at = False, clock()
        if breaker.state == "open":
            with pytest.raises(CircuitOpenError):
                await breaker.call(ok)
        started += prober._start_due()
        await settle()
        if breaker.state != "open":
            break
    assert recovered_at is not None
    assert breaker.state == "half_open"
    assert clock() - recovered_at < 1.0  # not the 27 s of a probe's timeout
    assert sum(not task.done() for task in started) <= MAX_IN_FLIGHT  # a bounded few
    # one probe per hurried gap (a quarter second) while it hung, not one per sale (4,000)
    assert sent < 200
    await prober.aclose()


async def test_a_gateway_answering_in_six_seconds_is_found_by_its_probes() -> None:
    """A gateway that jumped to 6 s answers opens the breaker as stalled. Its probes answer in
    6 s too: cut at 5 s (the first patience), none ever did, and the breaker stayed open for
    the reset timeout (an outside check: 27 s, every sale turned away). They wait 10 s now."""
    clock = ManualClock()
    pending: list[tuple[float, asyncio.Event]] = []

    async def six_seconds() -> None:
        answered = asyncio.Event()
        pending.append((clock() + 6.0, answered))
        await answered.wait()

    breaker, prober = probed(clock, six_seconds, min_open_time=None, reset_timeout=30.0)
    prober._timeout = 27.0
    await trip(breaker)
    opened = clock()
    started: list[asyncio.Task[None]] = []
    while breaker.state == "open" and clock() - opened < 30.0:
        clock.advance(0.01)
        for due, answered in pending:
            if due <= clock():
                answered.set()
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
        started += prober._start_due()
        await settle()
    assert breaker.state == "half_open"
    assert clock() - opened < 7.0  # the first probe's answer, not the reset timeout
    for _, answered in pending:
        answered.set()
    await prober.aclose()


async def test_while_probes_hang_no_payment_is_sent_as_a_timer_trial() -> None:
    clock = ManualClock()
    breaker = probing(clock, min_open_time=0.3, reset_timeout=5.0)
    events = recorder(breaker)
    await trip(breaker)
    opened = clock()
    while clock() - opened < 6.0:  # a hanging gateway: probes leave and never answer
        clock.advance(0.05)
        if breaker.probe_due():
            breaker.probe_sent()
        with contextlib.suppress(CircuitOpenError, Boom):
            await breaker.call(_boom)
    trials = [e.at - opened for e in events if e.type is EventType.HALF_OPENED]
    assert trials
    assert trials[0] >= 4.9  # not at 0.3 s: the reset timeout is the safety net


async def test_half_open_with_its_slots_taken_says_come_back_after_a_probe_interval() -> None:
    clock = ManualClock()
    breaker = probing(clock)
    await trip(breaker)
    breaker.record_probe(succeeded=True)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "ok"

    trial = asyncio.create_task(breaker.call(slow))
    await settle()
    with pytest.raises(CircuitOpenError) as rejected:
        await breaker.call(ok)
    assert rejected.value.retry_after_seconds <= 1.0  # not the 30 s call timeout
    gate.set()
    assert await trial == "ok"


async def test_probes_resume_while_the_timer_trials_hang_and_free_their_slots() -> None:
    """The open period's own trial, sent into a gateway that hangs, holds every half-open slot
    for up to a call timeout. Probes keep looking meanwhile: the first answer presumes the
    hung trials lost, and new trials close the breaker the moment the gateway is back."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    while True:  # probes get no answer until the timer's trial is due
        wait = breaker.rejection_wait()
        if wait is None:
            break
        clock.advance(min(wait, breaker.next_probe_in() or wait))
        if breaker.probe_due():
            breaker.probe_sent()
            breaker.record_probe(succeeded=False)
    hanging = asyncio.Event()

    async def hang() -> str:
        await hanging.wait()
        return "late"

    trials = [asyncio.create_task(breaker.call(hang)) for _ in range(3)]
    await settle()
    assert breaker.state == "half_open"
    assert not breaker.probe_due()  # not at once: the trials may still answer
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)  # every slot is held
    next_probe = breaker.next_probe_in()
    assert next_probe is not None
    clock.advance(next_probe)
    assert breaker.probe_due()
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=0.1)  # the gateway answers again
    for _ in range(3):
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    hanging.set()  # the old trials finally answer: they belong to a finished half-open period
    assert await asyncio.gather(*trials) == ["late"] * 3
    assert breaker.state == "closed"


async def test_a_half_open_breaker_whose_trials_answer_sends_no_probe() -> None:
    clock = ManualClock()
    breaker = probing(clock)
    await trip(breaker)
    clock.advance(breaker.next_probe_in() or 0.0)
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=0.1)
    assert breaker.state == "half_open"
    assert await breaker.call(ok) == "ok"
    clock.advance(5.0)
    assert not breaker.probe_due()
    assert breaker.next_probe_in() is None


async def test_slow_trials_a_probe_brought_are_not_presumed_lost() -> None:
    """A probe's answer brought the half-open, so its trials left for a gateway known to
    answer. A gateway that answers slowly (longer than a probe interval) must not have them
    presumed lost by the next probe: their successes would be ignored, new trials sent, and
    the breaker kept half-open, turning sales away, for as long as the gateway stays slow."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    clock.advance(breaker.next_probe_in() or 0.0)
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=2.5)
    assert breaker.state == "half_open"
    slow = asyncio.Event()

    async def answer_slowly() -> str:
        await slow.wait()
        return "ok"

    trials = [asyncio.create_task(breaker.call(answer_slowly)) for _ in range(3)]
    await settle()
    clock.advance(2.0)  # past the next probe's time: the trials are still out
    assert not breaker.probe_due()
    breaker.apply_shared_probe(succeeded=True)  # another instance's probe answers meanwhile
    slow.set()
    assert await asyncio.gather(*trials) == ["ok"] * 3
    assert breaker.state == "closed"


async def test_trials_a_probe_brought_that_hang_are_presumed_lost_once_overdue() -> None:
    """The gateway answered a probe and went down again (it hangs): the trials that answer
    brought hold every slot. Once they are overdue by the probes' own answer time, probes look
    again, and the next answer lets new trials close the breaker, without waiting for the hung
    trials' call timeout."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    clock.advance(breaker.next_probe_in() or 0.0)
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=0.1)
    assert breaker.state == "half_open"
    hanging = asyncio.Event()

    async def hang() -> str:
        await hanging.wait()
        return "late"

    trials = [asyncio.create_task(breaker.call(hang)) for _ in range(3)]
    await settle()
    clock.advance(0.1)  # within the probes' answer time: the trials may still answer
    assert breaker.next_probe_in() is None
    clock.advance(0.1)  # overdue: probes look again, on their own schedule
    next_probe = breaker.next_probe_in()
    assert next_probe is not None
    clock.advance(next_probe)
    assert breaker.probe_due()
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=0.1)  # the gateway is back
    for _ in range(3):
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    hanging.set()
    assert await asyncio.gather(*trials) == ["late"] * 3
    assert breaker.state == "closed"


def half_open_by_a_probe(clock: ManualClock, breaker: CircuitBreaker) -> None:
    """The next probe is sent and answered in 0.1 s: half-open, its trials due 0.15 s after
    they leave (the probes' answer time with its margin)."""
    clock.advance(breaker.next_probe_in() or 0.0)
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=0.1)
    assert breaker.state == "half_open"


async def presume_the_trials_in_flight_lost(clock: ManualClock, breaker: CircuitBreaker) -> None:
    clock.advance(0.2)  # the youngest trial in flight is overdue
    next_probe = breaker.next_probe_in()
    assert next_probe is not None
    clock.advance(next_probe)
    assert breaker.probe_due()
    breaker.probe_sent()
    breaker.record_probe(succeeded=True, latency=0.1)  # presumes the trials in flight lost


async def test_a_trial_presumed_lost_takes_only_itself_not_the_successes_before_it() -> None:
    """Two trials succeeded; the third is slow, a probe answers meanwhile and it is presumed
    lost. The two successes are evidence the gateway works and stay counted: one more success
    closes the breaker. Seen over real HTTP: five creates in a row succeeded and the breaker was
    still half-open, because each presumption threw away the trials already done."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    half_open_by_a_probe(clock, breaker)
    assert await breaker.call(ok) == "ok"
    assert await breaker.call(ok) == "ok"
    slow = Gate("late")
    third = asyncio.create_task(breaker.call(slow))
    await settle()
    await presume_the_trials_in_flight_lost(clock, breaker)
    assert breaker.state == "half_open"
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    slow.release.set()
    assert await third == "late"
    assert breaker.state == "closed"


async def test_a_trial_presumed_lost_that_answers_after_all_is_counted() -> None:
    """Trials presumed lost (a probe answered while they were overdue) that then succeed are
    the best evidence there is: the breaker closes on them, with no new trial needed."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    half_open_by_a_probe(clock, breaker)
    slow = Gate("late")
    trials = [asyncio.create_task(breaker.call(slow)) for _ in range(3)]
    await settle()
    await presume_the_trials_in_flight_lost(clock, breaker)
    assert breaker.state == "half_open"
    assert breaker.snapshot().trials_in_flight == 0  # their slots went to new trials
    slow.release.set()
    assert await asyncio.gather(*trials) == ["late"] * 3
    assert breaker.state == "closed"


async def test_a_trial_presumed_lost_that_fails_late_changes_nothing() -> None:
    """Its failure was already paid for (the probe lost credibility, new trials went): the
    trials that replaced it decide."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    half_open_by_a_probe(clock, breaker)
    fail_late = Gate(error=Boom("late"))
    trials = [asyncio.create_task(breaker.call(fail_late)) for _ in range(3)]
    await settle()
    await presume_the_trials_in_flight_lost(clock, breaker)
    fail_late.release.set()
    results = await asyncio.gather(*trials, return_exceptions=True)
    assert all(isinstance(result, Boom) for result in results)
    assert breaker.state == "half_open"
    for _ in range(3):
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"


async def test_a_reserved_trial_presumed_lost_before_it_called_still_goes() -> None:
    """The API reserves a trial slot, then stores the payment, then calls PayTabs. If its
    trial is presumed lost in between (a slow commit), the payment is already stored: turning
    its call away now would leave a stored payment behind a 503. It goes, beside the trials
    that took its slot, and its success counts."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=1)
    await trip(breaker)
    half_open_by_a_probe(clock, breaker)
    reservation = breaker.reserve()
    await presume_the_trials_in_flight_lost(clock, breaker)
    newer = breaker.reserve()  # the slot went to a new trial
    with reservation:
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    newer.release()


async def test_a_trial_that_leaves_late_in_the_half_open_period_is_not_overdue_at_once() -> None:
    """Overdue counts from when the youngest trial left, not from the probe's answer: a quiet
    shop's first create after a recovery may come long after the probe answered, and a probe
    sent while it is out must not presume it lost (nor cost the probe its credibility)."""
    clock = ManualClock()
    breaker = probing(clock, half_open_max_calls=3)
    await trip(breaker)
    half_open_by_a_probe(clock, breaker)
    clock.advance(5.0)  # no sale for five seconds
    slow = Gate()
    trials = [asyncio.create_task(breaker.call(slow)) for _ in range(3)]
    await settle()
    assert not breaker.probe_due()  # they left just now and may still answer
    clock.advance(0.1)
    assert not breaker.probe_due()
    breaker.apply_shared_probe(succeeded=True)  # another instance's probe: not a reason either
    assert breaker.snapshot().probes.misleading == 0
    slow.release.set()
    assert await asyncio.gather(*trials) == ["ok"] * 3
    assert breaker.state == "closed"


async def test_the_prober_keeps_looking_while_trials_a_probe_brought_may_hang() -> None:
    """The prober's own loop, not probes sent by hand: after the answer that half-opened the
    breaker it must not go to sleep until the next state change. The trials it brought may
    hang (the gateway answered the probe and went down again); once they are overdue a probe
    must go out and, the gateway back, new trials close the breaker. Found against the
    simulator: the service stayed half-open, turning creates away, for a whole call timeout."""
    clock = ManualClock()
    gateway = Gateway()
    breaker, prober = probed(clock, gateway.probe, half_open_max_calls=3)
    await trip(breaker)
    gateway.up = True
    for _ in range(10):  # the first probe, on the prober's own schedule
        wait = await prober.tick()
        if breaker.state == "half_open":
            break
        assert wait is not None
        clock.advance(wait)
    assert breaker.state == "half_open"
    hanging = asyncio.Event()

    async def hang() -> str:
        await hanging.wait()
        return "late"

    trials = [asyncio.create_task(breaker.call(hang)) for _ in range(3)]
    await settle()
    probes_then = gateway.probes
    for _ in range(10):  # the loop sleeps for what tick() returns; None: until a state change
        wait = await prober.tick()
        if gateway.probes > probes_then:
            break
        assert wait is not None, "the prober went to sleep with every slot held by a hung trial"
        clock.advance(wait)
    assert gateway.probes > probes_then
    for _ in range(3):
        assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    hanging.set()
    assert await asyncio.gather(*trials) == ["late"] * 3


async def test_a_path_that_hangs_while_probes_answer_gets_trials_at_the_probes_back_off() -> None:
    """A partial outage: probes (queries) answer, the breaker's calls hang. Each probe's answer
    presumes the hung trials lost and lets new ones go: real payments sent into the hang. A
    probe whose "up" the trials contradicted (they never answered within its answer time)
    loses credibility as when they fail, so new trials go at the probes' back-off (up to four
    intervals), not at probe speed. Measured against the simulator before: 36 creates sent
    into the hang in 5 s at a 200 ms probe interval."""
    clock = ManualClock()
    gateway = Gateway()
    breaker, prober = probed(clock, gateway.probe, half_open_max_calls=3)
    await trip(breaker)
    gateway.up = True
    hanging = asyncio.Event()
    admitted = 0

    async def hang() -> str:
        nonlocal admitted
        admitted += 1
        await hanging.wait()
        return "late"

    trials: list[asyncio.Task[str]] = []
    elapsed = 0.0
    while elapsed < 20.0:  # 20 probe intervals; a steady crowd keeps every free slot taken
        wait = await prober.tick()
        for _ in range(3):
            if breaker.rejection_wait() is None:
                trials.append(asyncio.create_task(breaker.call(hang)))
                await settle()
        step = 1.0 if wait is None else max(min(wait, 1.0), 0.05)
        clock.advance(step)
        elapsed += step
    # the first round, then one round per back-off (2, then 4 intervals): not one per probe
    assert admitted <= 3 * 7, admitted
    hanging.set()
    await asyncio.gather(*trials)
