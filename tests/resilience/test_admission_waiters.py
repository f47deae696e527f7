"""Callers held for a breaker's admission (``Prefer: wait``) are woken oldest first, and keep
their place while they wait: each sleep is bounded, and one that ends puts its caller back
where it stood, not at the back of the line.

Found in CI: five creates held behind a forced-open breaker (whose bounded sleep is 5 s) on a
loaded machine; the first four woke from their sleeps and went to the back, so the fifth was
woken first when the breaker closed and went on ahead of the four held before it.
"""

from __future__ import annotations

import asyncio

import pytest

from paytabs_guard.resilience.waiters import AdmissionWaiters

pytestmark = pytest.mark.anyio


class Caller:
    """A held caller whose bounded sleeps are as short as the test needs."""

    def __init__(self, waiters: AdmissionWaiters, sleep: float) -> None:
        self.sleep = sleep
        self.let_through = False
        self.looks = 0
        self.looked = asyncio.Event()
        self.task = asyncio.create_task(waiters.wait(self.rejection_wait, 30.0))

    def rejection_wait(self) -> float | None:
        self.looks += 1
        self.looked.set()
        return None if self.let_through else self.sleep

    async def looks_again(self, times: int) -> None:
        """Until the caller has looked ``times`` more times (each after a sleep ran out)."""
        target = self.looks + times
        async with asyncio.timeout(5):
            while self.looks < target:
                self.looked.clear()
                await self.looked.wait()


async def test_a_caller_whose_sleep_ran_out_keeps_its_place_ahead_of_a_later_one() -> None:
    waiters = AdmissionWaiters()
    first = Caller(waiters, sleep=0.001)  # wakes every millisecond and sleeps again
    await first.looks_again(1)
    second = Caller(waiters, sleep=30.0)
    await second.looks_again(1)
    await first.looks_again(3)  # slept, woke and slept again, since the second came
    first.sleep = 30.0
    await first.looks_again(1)
    assert len(waiters) == 2

    first.let_through = second.let_through = True
    waiters.wake(1)  # one slot: the one who waited longest
    done, _ = await asyncio.wait(
        {first.task, second.task}, timeout=5, return_when="FIRST_COMPLETED"
    )
    assert done == {first.task}
    assert first.task.result() is True
    assert len(waiters) == 1

    waiters.wake(1)
    assert await asyncio.wait_for(second.task, 5) is True
    assert len(waiters) == 0


async def test_many_callers_are_woken_in_the_order_they_came_whatever_their_sleeps() -> None:
    waiters = AdmissionWaiters()
    callers = []
    for n in range(6):
        caller = Caller(waiters, sleep=0.001 if n % 2 == 0 else 30.0)
        await caller.looks_again(1)
        callers.append(caller)
    for caller in callers[::2]:
        await caller.looks_again(2)
        caller.sleep = 30.0
        await caller.looks_again(1)
    for caller in callers:
        caller.let_through = True
    woken: list[int] = []
    for _ in callers:
        waiters.wake(1)
        waiting = {caller.task for caller in callers if not caller.task.done()}
        done, _ = await asyncio.wait(waiting, timeout=5, return_when="FIRST_COMPLETED")
        woken += [n for n, caller in enumerate(callers) if caller.task in done]
    assert woken == list(range(6))


async def test_a_caller_that_gives_up_leaves_no_future_behind() -> None:
    waiters = AdmissionWaiters()
    caller = Caller(waiters, sleep=0.001)
    await caller.looks_again(1)
    caller.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller.task
    assert len(waiters) == 0
    timed_out = AdmissionWaiters()
    assert await timed_out.wait(lambda: 0.001, 0.005) is False
    assert len(timed_out) == 0
