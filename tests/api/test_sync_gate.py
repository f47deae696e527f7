"""SyncGate: one PayTabs query per payment at a time, none again within the interval of an
answer, and nothing remembered past it (injected clock, no sleeps)."""

from __future__ import annotations

import asyncio

import pytest

from paytabs_guard.entrypoints.api.sync import SyncGate, _NotAsked

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _settle(task: asyncio.Task[object]) -> None:
    await task
    await asyncio.sleep(0)  # the done callbacks run on the next turn of the loop


async def test_concurrent_askers_share_one_query_and_an_answer_holds_for_the_interval() -> None:
    clock = Clock()
    gate = SyncGate(2.0, clock)
    started: list[str] = []
    release = asyncio.Event()

    async def ask() -> object:
        started.append("query")
        await release.wait()
        return "the payment"

    def start() -> asyncio.Task[object]:
        return asyncio.create_task(ask())

    first = gate.query("pay_1", start)  # type: ignore[arg-type]
    second = gate.query("pay_1", start)  # type: ignore[arg-type]
    assert first is second
    other = gate.query("pay_2", start)  # type: ignore[arg-type]
    assert other is not first
    release.set()
    await _settle(first)
    await _settle(other)
    assert started == ["query", "query"]  # one per payment
    assert gate.answered_lately("pay_1")
    clock.now += 1.99
    assert gate.answered_lately("pay_1")
    clock.now += 0.01
    assert not gate.answered_lately("pay_1")


async def test_no_answer_from_paytabs_lets_the_next_caller_ask_at_once() -> None:
    gate = SyncGate(2.0, Clock())

    async def not_asked() -> object:
        return _NotAsked("PayTabs is unavailable")

    async def broken() -> object:
        raise RuntimeError("lost")

    for work in (not_asked, broken):
        task = gate.query("pay_1", lambda work=work: asyncio.create_task(work()))  # type: ignore[misc]
        await asyncio.wait({task})
        await asyncio.sleep(0)
        assert not gate.answered_lately("pay_1")
        assert len(gate) == 0


async def test_it_remembers_only_the_answers_of_the_last_interval() -> None:
    clock = Clock()
    gate = SyncGate(2.0, clock)

    async def answer() -> object:
        return "the payment"

    for n in range(1000):
        await _settle(gate.query(f"pay_{n}", lambda: asyncio.create_task(answer())))  # type: ignore[arg-type]
        clock.now += 0.01  # 1000 answers over 10 s: at most the last 2 s are kept
    assert 190 <= len(gate) <= 201
    assert gate.answered_lately("pay_999")
    assert not gate.answered_lately("pay_0")
