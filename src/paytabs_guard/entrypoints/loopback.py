"""Serve an ASGI app with uvicorn on a real socket inside the running event loop.

Used by the demo (a callback receiver next to the simulator) and by tests that need real HTTP.
The simulator has its own copy (``paytabs_simulator.server.serve_asgi``) because it must not
import ``paytabs_guard``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from paytabs_guard.entrypoints.serve import http_protocol


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lifespan: Literal["auto", "on", "off"] = "off",
    graceful_shutdown_seconds: int | None = None,
) -> AsyncIterator[str]:
    """Start ``app`` on ``host:port`` (0 = any free port); yield its base URL; stop it on exit.

    uvicorn runs with ``proxy_headers=False``: it must not rewrite the client address from
    ``X-Forwarded-For`` (the app resolves clients itself, through TRUSTED_PROXIES only), and
    with ``log_config=None``, so the host application's logging is left alone.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,
        lifespan=lifespan,
        access_log=False,
        proxy_headers=False,
        http=http_protocol(),  # the head bounded as serve bounds it
        timeout_graceful_shutdown=graceful_shutdown_seconds,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces the start-up error
            await asyncio.sleep(0.005)
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
