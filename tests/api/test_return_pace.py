"""The crowd an outage turned away comes back oldest first, one slot apart: the line of
turned-away creates and the paced release of held requests (injected clock, no sleeps), then the
line as a merchant sees it over real HTTP."""

from __future__ import annotations

import asyncio
import random

import pytest

from paytabs_guard.entrypoints.api.return_pace import HUNG_AFTER, RETURN_GRACE, ReturnPace
from paytabs_guard.resilience.clock import ManualClock
from paytabs_simulator.server import RunningSimulator

from .api_support import new_key, running_service

BODY = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
SLOT = 0.02  # 50 turns per second


def pace(clock: ManualClock, **kwargs: object) -> ReturnPace:
    return ReturnPace(50, clock=clock, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def rank_of(wait: float | None) -> int:
    """The place in line a line wait stands for (the slot's random part is under one slot)."""
    assert wait is not None
    return int(wait // SLOT)


def test_the_first_turned_away_is_sent_back_first_and_each_later_one_slot_after() -> None:
    line = pace(ManualClock())
    waits = [line.line_wait(("merchant", f"key-{n}"), 1.0) for n in range(5)]
    assert [rank_of(w) for w in waits] == [0, 1, 2, 3, 4]


def test_a_create_keeps_its_place_however_often_it_is_turned_away() -> None:
    clock = ManualClock()
    line = pace(clock)
    for n in range(3):
        line.line_wait(("merchant", f"key-{n}"), 1.0)
    clock.advance(1.0)  # everyone comes back on time and is turned away again
    line.line_wait(("merchant", "newcomer"), 1.0)
    again = [rank_of(line.line_wait(("merchant", f"key-{n}"), 1.0)) for n in range(3)]
    assert again == [0, 1, 2]
    assert rank_of(line.line_wait(("merchant", "newcomer"), 1.0)) == 3


def test_the_same_key_of_another_client_is_another_place() -> None:
    line = pace(ManualClock())
    line.line_wait(("shop-a", "order-1"), 1.0)
    assert rank_of(line.line_wait(("shop-b", "order-1"), 1.0)) == 1


def test_an_answered_create_leaves_and_the_ones_behind_it_move_up() -> None:
    line = pace(ManualClock())
    for n in range(3):
        line.line_wait(("merchant", f"key-{n}"), 1.0)
    line.leave(("merchant", "key-0"))
    assert len(line) == 2
    assert rank_of(line.line_wait(("merchant", "key-1"), 1.0)) == 0
    assert rank_of(line.line_wait(("merchant", "key-2"), 1.0)) == 1


def test_a_merchant_that_gave_up_drops_out_once_its_time_has_passed() -> None:
    clock = ManualClock()
    line = pace(clock)
    line.line_wait(("merchant", "gave-up"), 1.0)
    line.line_wait(("merchant", "stays"), 1.0)
    clock.advance(1.0 + SLOT)
    # "stays" comes back on time (before the grace ends): "gave-up" is still ahead of it.
    assert rank_of(line.line_wait(("merchant", "stays"), 1.0)) == 1
    clock.advance(RETURN_GRACE)  # now "gave-up" is past its time and the grace
    assert rank_of(line.line_wait(("merchant", "stays"), 1.0)) == 0
    assert len(line) == 1


def test_a_full_line_takes_no_newcomer() -> None:
    line = pace(ManualClock(), capacity=2)
    line.line_wait(("merchant", "a"), 1.0)
    line.line_wait(("merchant", "b"), 1.0)
    assert line.line_wait(("merchant", "c"), 1.0) is None
    assert len(line) == 2
    assert rank_of(line.line_wait(("merchant", "b"), 1.0)) == 1  # those in line keep theirs


def test_rate_zero_turns_the_line_and_the_pacing_off() -> None:
    line = ReturnPace(0)
    assert not line.enabled
    assert line.line_wait(("merchant", "a"), 1.0) is None
    assert len(line) == 0


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        ReturnPace(-1)


def test_a_held_create_takes_its_place_when_it_starts_to_wait() -> None:
    clock = ManualClock()
    line = pace(clock)
    line.line_wait(("merchant", "turned-away"), 1.0)
    line.join(("merchant", "held"), 20.0)
    line.join(("merchant", "held"), 20.0)  # (held again: the same place)
    line.line_wait(("merchant", "later"), 1.0)
    assert rank_of(line.line_wait(("merchant", "held"), 1.0)) == 1
    assert rank_of(line.line_wait(("merchant", "later"), 1.0)) == 2
    assert len(line) == 3


class Turns:
    """Creates asking for their turn at one instant; records the order they were let go in and
    the time each went (the pace's sleeps move the manual clock)."""

    def __init__(self, clock: ManualClock, line: ReturnPace) -> None:
        self.clock = clock
        self.line = line
        self.went: list[tuple[str, float]] = []

    async def ask(self, name: str, who: tuple[str, str] | None) -> None:
        async with self.line.turn(who):
            self.went.append((name, round(self.clock() - 1000.0, 6)))


async def waited(line: ReturnPace, who: tuple[str, str] | None) -> bool:
    """Whether a create that starts and ends at once had to wait for its turn."""
    async with line.turn(who) as did:
        return did


def turns(clock: ManualClock, hung_after: float | None = HUNG_AFTER) -> tuple[ReturnPace, Turns]:
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)  # whoever was let go runs first, at the time it was let go
        clock.advance(seconds)

    line = ReturnPace(50, clock=clock, sleep=sleep, rng=random.Random(7), hung_after=hung_after)
    return line, Turns(clock, line)


@pytest.mark.anyio
async def test_with_nobody_in_line_a_create_never_waits_for_a_turn() -> None:
    clock = ManualClock()
    line, asked = turns(clock)
    for n in range(20):
        assert await waited(line, ("merchant", f"fresh-{n}")) is False
    assert asked.went == []


@pytest.mark.anyio
async def test_while_a_crowd_comes_back_creates_start_one_slot_apart_the_oldest_first() -> None:
    clock = ManualClock()
    line, asked = turns(clock)
    for name in ("oldest", "middle", "newest"):
        line.line_wait(("merchant", name), 1.0)
    # PayTabs is back; they come back together, the newest first, and a fresh create too.
    await asyncio.gather(
        asked.ask("newest", ("merchant", "newest")),
        asked.ask("fresh", None),
        asked.ask("middle", ("merchant", "middle")),
        asked.ask("oldest", ("merchant", "oldest")),
    )
    # The first to ask finds nobody waiting and goes at once; the others wait for their turn,
    # by place in line, the create without a place last.
    assert asked.went == [
        ("newest", 0.0),
        ("oldest", SLOT),
        ("middle", 2 * SLOT),
        ("fresh", 3 * SLOT),
    ]


@pytest.mark.anyio
async def test_a_create_that_stops_waiting_gives_its_turn_to_the_next() -> None:
    clock = ManualClock()
    line, asked = turns(clock)
    for name in ("first", "gone", "next"):
        line.line_wait(("merchant", name), 1.0)
    assert await waited(line, ("merchant", "first")) is False  # at once: nobody waiting
    gone = asyncio.create_task(asked.ask("gone", ("merchant", "gone")))
    waiting = asyncio.create_task(asked.ask("next", ("merchant", "next")))
    await asyncio.sleep(0)
    assert line.waiting == 2
    gone.cancel()  # its client left
    await waiting
    assert asked.went == [("next", SLOT)]
    assert line.waiting == 0


@pytest.mark.anyio
async def test_no_more_than_a_few_creates_with_a_turn_run_at_once() -> None:
    clock = ManualClock()
    line, _ = turns(clock, hung_after=None)  # (counted however long they run: below)
    assert line.in_progress == 10  # 50 a second for 200 ms
    for n in range(12):
        line.line_wait(("merchant", f"key-{n}"), 1.0)
    running = asyncio.Event()
    started: list[int] = []

    async def slow(n: int) -> None:
        async with line.turn(("merchant", f"key-{n}")):
            started.append(n)
            await running.wait()  # PayTabs has not answered yet

    tasks = [asyncio.create_task(slow(n)) for n in range(11)]
    for _ in range(40):  # two slots per pass: the turns are due long before the end
        await asyncio.sleep(0)
        clock.advance(SLOT / 2)
    assert started == list(range(10))  # the eleventh waits for one of them to end
    assert line.waiting == 1
    running.set()
    await asyncio.gather(*tasks)
    assert started == list(range(11))


@pytest.mark.anyio
async def test_creates_hung_on_paytabs_stop_holding_up_the_turns() -> None:
    """A create that got a turn and then waits on a PayTabs that hangs uses no CPU: counted
    until its call timed out (27 s), ten of them stopped every create of the worker, long
    after PayTabs answered again (an outside run: a hang of the create path for 15 s, and
    every create for the 20 s after it took 9-20 s). Past ``HUNG_AFTER`` it no longer counts."""
    clock = ManualClock()
    line, _ = turns(clock)
    for n in range(12):
        line.line_wait(("merchant", f"key-{n}"), 1.0)
    hang = asyncio.Event()
    went: dict[int, float] = {}

    async def hung(n: int) -> None:
        async with line.turn(("merchant", f"key-{n}")):
            went[n] = clock()
            await hang.wait()  # PayTabs does not answer

    tasks = [asyncio.create_task(hung(n)) for n in range(11)]
    for _ in range(400):
        await asyncio.sleep(0)
        clock.advance(SLOT / 2)
    assert len(went) == 11
    assert went[10] - went[0] >= HUNG_AFTER  # not before the first ones look hung
    hang.set()
    await asyncio.gather(*tasks)
    # the turns they held are all given back, once each
    for n in range(11, 12):
        assert await waited(line, ("merchant", f"key-{n}")) is False


@pytest.mark.anyio
async def test_once_the_line_is_empty_turns_stop() -> None:
    clock = ManualClock()
    line, _ = turns(clock)
    line.line_wait(("merchant", "a"), 1.0)
    assert await waited(line, ("merchant", "a")) is False
    line.leave(("merchant", "a"))
    for _ in range(5):
        assert await waited(line, None) is False  # no crowd: no turns, however close together


@pytest.mark.anyio
async def test_without_pacing_a_turn_never_waits() -> None:
    line = ReturnPace(0)
    line.line_wait(("merchant", "a"), 1.0)
    for _ in range(3):
        assert await waited(line, ("merchant", "a")) is False


# ---- over HTTP ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_turned_away_creates_are_told_to_come_back_in_the_order_they_first_came(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with running_service(sim, sqlite_url, env={"CIRCUIT_BREAKER_RETURN_RATE": "50"}) as svc:
        breaker = svc.container.gateway.breakers.get("create")
        breaker.force_open()
        keys = [new_key() for _ in range(4)]

        async def told(key: str) -> int:
            refused = await svc.api.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
            )
            assert refused.status_code == 503
            body = refused.json()
            assert body["retry_after"] == int(refused.headers["retry-after"])
            assert body["retry_after"] * 1000 >= body["retry_after_ms"]  # never earlier
            ms: int = body["retry_after_ms"]
            return ms

        def place(ms: int) -> int:
            """The forced-open wait (5 s) plus one 20 ms slot per create ahead in line, plus
            under a slot at random (rounded up to whole ms)."""
            rank = max(ms - 5_001, 0) // 20
            assert 5_000 + 20 * rank <= ms <= 5_000 + 20 * (rank + 1)
            return rank

        assert [place(await told(key)) for key in keys] == [0, 1, 2, 3]
        assert [place(await told(key)) for key in reversed(keys)] == [3, 2, 1, 0]

        breaker.reset()  # PayTabs is back: the head of the line is answered and leaves
        created = await svc.api.post(
            "/payments/v2/create", json=BODY, headers={"Idempotency-Key": keys[0]}
        )
        assert created.status_code == 201, created.text
        assert len(svc.app.state.runtime.pace) == 3
        breaker.force_open()
        assert place(await told(keys[1])) == 0


@pytest.mark.anyio
async def test_a_crowd_back_together_after_an_outage_is_served_in_turns_and_leaves_the_line(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with running_service(sim, sqlite_url, env={"CIRCUIT_BREAKER_RETURN_RATE": "50"}) as svc:
        breaker = svc.container.gateway.breakers.get("create")
        breaker.force_open()
        keys = [new_key() for _ in range(6)]
        for key in keys:
            refused = await svc.api.post(
                "/payments/v2/create", json=BODY, headers={"Idempotency-Key": key}
            )
            assert refused.status_code == 503
        line = svc.app.state.runtime.pace
        assert len(line) == 6
        assert "\npaytabs_guard_return_line 6.0\n" in (await svc.anonymous.get("/metrics")).text
        breaker.reset()
        back = await asyncio.gather(
            *(
                svc.api.post("/payments/v2/create", json=BODY, headers={"Idempotency-Key": key})
                for key in reversed(keys)
            )
        )
        assert [answer.status_code for answer in back] == [201] * 6
        assert len({answer.json()["id"] for answer in back}) == 6
        assert len(line) == 0
        assert line.waiting == 0
        metrics = (await svc.anonymous.get("/metrics")).text
        assert "\npaytabs_guard_return_line 0.0\n" in metrics
        assert "\npaytabs_guard_return_turns_waiting 0.0\n" in metrics


@pytest.mark.anyio
async def test_held_creates_take_their_places_and_go_on_in_the_order_they_were_held(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    # At 5 a second one create with a turn runs at a time (return_pace.TURN_SECONDS), so the
    # answers come in the order the turns were given, however long each create takes.
    async with running_service(sim, sqlite_url, env={"CIRCUIT_BREAKER_RETURN_RATE": "5"}) as svc:
        breaker = svc.container.gateway.breakers.get("create")
        breaker.force_open()
        runtime = svc.app.state.runtime
        answered: list[int] = []

        async def held(n: int, key: str) -> None:
            created = await svc.api.post(
                "/payments/v2/create",
                json=BODY,
                headers={"Idempotency-Key": key, "Prefer": "wait=20"},
            )
            assert created.status_code == 201, created.text
            answered.append(n)

        tasks = []
        for n in range(5):
            tasks.append(asyncio.create_task(held(n, new_key())))
            async with asyncio.timeout(5):
                while runtime.holding.held < n + 1:  # noqa: ASYNC110 - arrives over a socket
                    await asyncio.sleep(0.005)
        assert len(runtime.pace) == 5  # each took its place as it started to wait
        breaker.reset()  # woken together, they start in turns, the first held first
        await asyncio.gather(*tasks)
        assert answered == [0, 1, 2, 3, 4]
        assert len(runtime.pace) == 0


@pytest.mark.anyio
async def test_a_create_without_an_idempotency_key_gets_the_random_spread(
    sim: RunningSimulator, sqlite_url: str
) -> None:
    async with running_service(sim, sqlite_url) as svc:
        svc.container.gateway.breakers.get("create").force_open()
        refused = await svc.api.post("/payments/v2/create", json=BODY)
        if refused.status_code == 503:  # (when the service requires the key it says so: 400)
            assert 5_000 <= refused.json()["retry_after_ms"] <= 5_250
            assert len(svc.app.state.runtime.pace) == 0
        else:
            assert refused.status_code == 400
