"""Fixtures: one simulator per test module on a real loopback socket, reset before each test.

Starting uvicorn costs a few hundred milliseconds, so tests share a server per module and
reset its state (store, faults, callback log, clock) instead of starting their own. Tests
that need another configuration start one with ``support.gateway(sim_config(...))``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from paytabs_simulator.server import serve_asgi
from testkit.clock import FakeClock

from .support import START, CallbackReceiver, Gateway, gateway, sim_config


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope (the root conftest's is per test) so module-scoped async fixtures can exist.
    return "asyncio"


@pytest.fixture(scope="module")
def shared_clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
async def shared_gateway(anyio_backend: str, shared_clock: FakeClock) -> AsyncIterator[Gateway]:
    async with gateway(sim_config(shared_clock)) as connected:
        yield connected


@pytest.fixture(scope="module")
async def shared_receiver(anyio_backend: str) -> AsyncIterator[CallbackReceiver]:
    merchant = CallbackReceiver()
    async with serve_asgi(merchant, lifespan="off") as base_url:
        merchant.url = f"{base_url}/paytabs/callback"
        yield merchant


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    shared_clock.now = START
    return shared_clock


@pytest.fixture
async def gw(shared_gateway: Gateway, clock: FakeClock) -> Gateway:
    await shared_gateway.sim.engine.reset()
    return shared_gateway


@pytest.fixture
def receiver(shared_receiver: CallbackReceiver) -> CallbackReceiver:
    shared_receiver.reset()
    return shared_receiver
