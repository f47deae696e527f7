"""Running the simulator: in the current event loop for tests, or blocking for the CLI."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from paytabs_simulator.app import create_app
from paytabs_simulator.config import SimulatorConfig
from paytabs_simulator.engine import Engine
from paytabs_simulator.injection import SimulatedConnectionReset

DEFAULT_PORT = 8090


class _HideSimulatedResets(logging.Filter):
    """uvicorn logs every exception that ends a response; a reset we inject is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedConnectionReset))


_RESET_FILTER = _HideSimulatedResets()


def _hide_simulated_resets() -> None:
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if _RESET_FILTER not in uvicorn_errors.filters:
        uvicorn_errors.addFilter(_RESET_FILTER)


@dataclass(frozen=True)
class RunningSimulator:
    base_url: str
    app: FastAPI
    engine: Engine


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lifespan: Literal["auto", "on", "off"] = "auto",
    before_shutdown: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a real socket in this event loop; yields its base URL."""
    _hide_simulated_resets()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # leave the host application's logging alone
        lifespan=lifespan,
        access_log=False,
        # Backstop only: hangs and delays end at once when before_shutdown releases them.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.005)
        display_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{display_host}:{bound_port}"
    finally:
        if before_shutdown is not None:
            before_shutdown()
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """Start a simulator on a loopback socket (port 0 = any free port) for the block's duration."""
    app = create_app(config)
    engine: Engine = app.state.simulator
    async with serve_asgi(
        app, host, port, lifespan="on", before_shutdown=engine.begin_shutdown
    ) as base_url:
        yield RunningSimulator(base_url=base_url, app=app, engine=engine)


def serve(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    log_level: str = "info",
) -> None:
    """Run the simulator until interrupted (the CLI's entry point). Below ``info`` the access
    log is off too: a parent that runs the simulator beside its own logs (``serve
    --simulator``) keeps only the simulator's warnings and errors."""
    _hide_simulated_resets()
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level in ("debug", "info"),
        timeout_graceful_shutdown=5,
    )
