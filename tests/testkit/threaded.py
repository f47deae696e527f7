"""An async context manager held open on an event loop of its own, in a thread: a server that
outlives the event loops a test runs one after another (``asyncio.run`` per call, as a sync web
framework calls async code)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

T = TypeVar("T")

WAIT = 10.0  # seconds to start or stop before the test fails


@contextlib.contextmanager
def entered_in_thread(factory: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """What ``factory()`` yields, for the block; its loop runs in a daemon thread meanwhile."""
    entered: list[T] = []
    failed: list[BaseException] = []
    loops: list[asyncio.AbstractEventLoop] = []
    ready = threading.Event()
    stop = asyncio.Event()

    async def hold() -> None:
        loops.append(asyncio.get_running_loop())
        try:
            async with factory() as value:
                entered.append(value)
                ready.set()
                await stop.wait()
        except BaseException as error:  # reported to the test's thread
            failed.append(error)
            ready.set()

    def run() -> None:
        # asyncio.run: what the block left running (a server's handlers) is cancelled and
        # finished before the loop closes, not left to the garbage collector.
        asyncio.run(hold())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if not ready.wait(WAIT):
            raise TimeoutError("the threaded context did not start")
        if failed:
            raise failed[0]
        yield entered[0]
    finally:
        if loops and not loops[0].is_closed():
            loops[0].call_soon_threadsafe(stop.set)
        thread.join(WAIT)
