"""The simulator as one ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from paytabs_simulator.admin import admin_routes
from paytabs_simulator.api import payment_api
from paytabs_simulator.config import SimulatorConfig
from paytabs_simulator.docs import install_docs
from paytabs_simulator.engine import Engine
from paytabs_simulator.hosted_page import hosted_page_routes
from paytabs_simulator.injection import FaultMiddleware


def create_app(config: SimulatorConfig | None = None) -> FastAPI:
    """A PayTabs simulator; ``app.state.simulator`` is its Engine (store, faults, callbacks).

    Without a server lifespan (e.g. under ``httpx.ASGITransport``) call
    ``await app.state.simulator.aclose()`` when done, to stop callback deliveries.
    """
    engine = Engine(config or SimulatorConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await engine.aclose()

    app = FastAPI(
        title="PayTabs simulator",
        summary="A stand-in for PayTabs PT2 with a hosted page, signed callbacks and faults.",
        lifespan=lifespan,
        docs_url=None,  # served offline by install_docs
        openapi_url="/_sim/openapi.json",
        redoc_url=None,
    )
    app.state.simulator = engine
    install_docs(app)
    app.include_router(payment_api(engine))
    app.include_router(hosted_page_routes(engine))
    app.include_router(admin_routes(engine))
    app.add_middleware(FaultMiddleware, engine=engine)
    return app
