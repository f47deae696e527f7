"""A PostgreSQL that stops answering mid-connection fails the statement, not the request forever.

A network path that freezes (a firewall dropping packets, a database host that hangs) leaves a
statement waiting for an answer that never comes: TCP alone notices after many minutes. The
engine gives every statement a deadline; the caller gets an error the API maps to 503, and the
pool recovers once the path answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from paytabs_guard.adapters.sql import create_engine
from paytabs_guard.bootstrap import STORAGE_UNAVAILABLE

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


class FreezingProxy:
    """Forwards TCP to PostgreSQL; ``frozen`` holds every byte back (both ways) until thawed."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._open = asyncio.Event()
        self._open.set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    def freeze(self) -> None:
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FreezingProxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self.thaw()
            for writer in self._writers:
                writer.close()
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)


async def test_a_statement_on_a_frozen_path_fails_within_its_deadline_and_the_pool_recovers(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    proxy = FreezingProxy(url.host or "127.0.0.1", url.port or 5432)
    async with proxy.running():
        through = url.set(host="127.0.0.1", port=proxy.port)
        engine = create_engine(
            through.render_as_string(hide_password=False),
            pool_size=2,
            statement_timeout_seconds=0.5,
        )
        try:
            async with engine.connect() as connection:
                assert (await connection.execute(text("SELECT 1"))).scalar() == 1
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(STORAGE_UNAVAILABLE):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 2"))
            assert time.monotonic() - started < 5.0  # the deadline, not TCP's minutes
            proxy.thaw()
            answers = []
            for _ in range(3):  # every pooled connection serves again, the stuck one replaced
                async with engine.connect() as connection:
                    answers.append((await connection.execute(text("SELECT 3"))).scalar())
            assert answers == [3, 3, 3]
        finally:
            await engine.dispose()
