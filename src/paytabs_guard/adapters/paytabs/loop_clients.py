"""One ``httpx.AsyncClient`` per event loop, each closed as its loop shuts down: httpx's own
transport for a ``PayTabsClient`` kept across event loops.

httpx's transport (httpcore's pool) keeps its keep-alive connections for whichever loop asks
next, but a connection is the loop's it was made on: its socket is registered there. Where
the library runs without httptools (``pip install paytabs-guard``, no service extra), or
through a proxy from the environment, a ``PayTabs`` kept for the process and called under
``asyncio.run`` per call took the last loop's connection on the next loop and failed with
"Event loop is closed", every second call, after PayTabs had already acted on the one
before. The lean transport (``http11.Http11Transport``) keeps its connections per loop; this
does the same for httpx's by giving each loop a client of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

import httpx


class OneClient:
    """One client for every loop: over a transport that serves any loop (the lean transport
    keeps its connections per loop; a test's transport is used as given)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def current(self) -> httpx.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()


class ClientPerLoop:
    """The running loop's client, built on its first call there by ``build`` and closed when
    that loop shuts down (``asyncio.run``, ``asyncio.Runner``, uvloop's ``run``), or by
    :meth:`aclose`. Like the rest of the client: one loop at a time, not thread-safe."""

    def __init__(self, build: Callable[[], httpx.AsyncClient]) -> None:
        self._build = build
        # Per loop (by id; the loop itself kept to tell a reused id apart): its client, and
        # what closes it as the loop ends.
        self._loops: dict[
            int,
            tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, AsyncGenerator[None, None]],
        ] = {}

    async def current(self) -> httpx.AsyncClient:
        """The running loop's client."""
        loop = asyncio.get_running_loop()
        held = self._loops.get(id(loop))
        if held is not None and held[0] is loop:
            return held[1]
        self._forget_closed_loops()
        client = self._build()
        watch = self._until_loop_ends(loop, client)
        self._loops[id(loop)] = (loop, client, watch)
        # Its first step registers it with the loop's async generators: asyncio.run and
        # asyncio.Runner close every one still suspended before they close the loop, and that
        # is how the client hears the loop is ending (http11.Http11Transport._watch_loop too).
        await anext(watch)
        return client

    async def aclose(self) -> None:
        """Close every loop's client: the running loop's here, another live loop's on that
        loop, a closed loop's by letting go of it (its sockets close when collected)."""
        running = asyncio.get_running_loop()
        for loop, _, watch in list(self._loops.values()):
            if loop is running:
                await watch.aclose()
            elif loop.is_closed():
                _finish(watch)
            else:  # another thread's loop (not a supported use, but not left open either)
                with contextlib.suppress(RuntimeError):  # it closed meanwhile
                    asyncio.run_coroutine_threadsafe(watch.aclose(), loop)
        self._loops.clear()

    async def _until_loop_ends(
        self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._loops.get(id(loop), (None,))[0] is loop:
                del self._loops[id(loop)]
            # A loop closed without shutting down its async generators cannot run the close;
            # the connections' sockets close when the client is collected.
            if not loop.is_closed():
                await client.aclose()

    def _forget_closed_loops(self) -> None:
        """Let go of the clients of loops that closed without telling (closed by hand)."""
        for key, (loop, _, watch) in list(self._loops.items()):
            if loop.is_closed():
                del self._loops[key]
                _finish(watch)


def _finish(watch: AsyncGenerator[None, None]) -> None:
    """Close a loop's watch after its loop closed without closing it. Left to the garbage
    collector, it would ask that loop to close it, and a closed loop raises. On a closed loop
    its ``finally`` awaits nothing, so one step of ``aclose()`` runs it to the end here."""
    closing = watch.aclose()
    with contextlib.suppress(StopIteration):
        closing.send(None)
