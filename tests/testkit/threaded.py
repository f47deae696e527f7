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
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def hold() -> None:
        try:
            async with factory() as value:
                entered.append(value)
                ready.set()
                await stop.wait()
        except BaseException as error:  # reported to the test's thread
            failed.append(error)
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(hold(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(WAIT):
            raise TimeoutError("the threaded context did not start")
        if failed:
            raise failed[0]
        yield entered[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(WAIT)
        if not thread.is_alive():
            loop.close()
