"""The relay's log through a storage outage: the first failed run with its traceback, then a
line a minute while the runs keep failing, and one when they succeed again. It logged every
failed run (one a second) with a traceback and the SQL: 600 error lines per worker for a
ten-minute database outage."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import OutboxRelay
from paytabs_guard.adapters.events.delivery_marks import RelayStats
from testkit.clock import FakeClock

from .events_support import RecordingSink, add_event

pytestmark = pytest.mark.anyio
RELAY_LOGGER = "paytabs_guard.adapters.events.relay"


class EndedRelay(OutboxRelay):
    """The relay with a hook after each run, failed or not, so the test waits for runs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ended: asyncio.Queue[None] = asyncio.Queue()

    async def run_once(self) -> RelayStats:
        try:
            return await super().run_once()
        finally:
            self.ended.put_nowait(None)


async def _outbox(engine: AsyncEngine, rename: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(rename))


async def test_a_storage_outage_is_one_traceback_then_a_line_a_minute_then_recovery(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    relay = EndedRelay(engine, [RecordingSink("shop")], clock=clock)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger=RELAY_LOGGER)
    worker = asyncio.create_task(relay.run_forever(stop, interval=3600))

    async def one_run() -> None:
        relay.notify()
        await asyncio.wait_for(relay.ended.get(), timeout=10)

    try:
        await asyncio.wait_for(relay.ended.get(), timeout=10)  # the first run, on a good store
        await _outbox(engine, "ALTER TABLE outbox RENAME TO outbox_gone")  # every run fails now
        for _ in range(6):  # 50 s of failing runs
            await one_run()
            clock.advance(10)
        await one_run()  # 60 s after the first failure
        await _outbox(engine, "ALTER TABLE outbox_gone RENAME TO outbox")
        await add_event(engine, "pay_a", "payment.created")
        await one_run()
    finally:
        stop.set()
        relay.notify()
        await asyncio.wait_for(worker, timeout=10)

    lines = [
        (record.levelname, record.getMessage(), record.exc_info is not None)
        for record in caplog.records
        if record.name == RELAY_LOGGER
    ]
    first, repeat, back = lines
    assert first[0] == "ERROR"
    assert first[1].startswith("outbox relay run failed")
    assert first[2], "the first failure of a streak keeps its traceback"
    assert repeat[0] == "WARNING"
    assert not repeat[2]
    assert repeat[1].startswith("outbox relay runs still failing: 7 in a row, the latest ")
    assert "\n" not in repeat[1]  # the error's first line, not its SQL
    assert back == ("WARNING", "outbox relay runs succeed again, after 7 failed", False)
