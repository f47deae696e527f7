"""A read timeout is a timeout: the calls a hang caught that time out after it ended count for
nothing, over real HTTP against the simulator, with the service's wiring (``build_gateway``).

The breaker set such calls aside as old news only when its *own* call timeout cut them. With
the service's settings the transport's read timeout always ends first (27 s against 30 s,
``http_timeout_within``), so every hung call came back as an ``AmbiguousGatewayError`` and was
counted as a failure, and as an answer: an outside run of a 10 s hang at 3 creates a second
saw the create breaker close on the recovery, then open again 27 s after the hang began
(``error_rate`` 80 %) on a gateway that had been answering for 15 s, as the hung calls timed out
together. Now a failure the adapter marks as unanswered (``went_unanswered``) is judged as the
breaker's own timeout: a timeout in the window, never an answer, and old news once PayTabs
answered a call sent after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from paytabs_guard.adapters.paytabs.errors import AmbiguousGatewayError
from paytabs_guard.bootstrap import GatewayParts, build_gateway
from paytabs_guard.domain import Operation
from paytabs_guard.resilience import ManualClock
from paytabs_guard.settings import load_settings
from paytabs_simulator.app import create_app
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.engine import Engine
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import serve_asgi

pytestmark = pytest.mark.anyio

HUNG = 12  # more than CIRCUIT_BREAKER_CONSECUTIVE_FAILURES (10) and the volume threshold (5)
WAIT = 10.0  # seconds a test waits for requests to reach the simulator before it fails
HANG = Faults(down=True, down_mode="hang", hang_max_seconds=30)


class Arrivals:
    """ASGI middleware in front of the simulator: wakes a test once ``n`` requests came in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0
        self._wanted = 0
        self._reached = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/payment/query":
            self.count += 1
            if self.count >= self._wanted:
                self._reached.set()
        await self.app(scope, receive, send)

    async def reach(self, n: int) -> None:
        self._wanted = n
        if self.count < n:
            self._reached.clear()
            await asyncio.wait_for(self._reached.wait(), WAIT)


@dataclass
class Rig:
    parts: GatewayParts
    clock: ManualClock
    engine: Engine
    arrivals: Arrivals

    async def hung_queries(self, n: int) -> list[asyncio.Task[object]]:
        """``n`` queries sent into a hang, each at the simulator when this returns."""
        self.engine.set_faults(HANG)
        before = self.arrivals.count
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(self.parts.paytabs.query_cart(f"hung-{before + i}"))
            for i in range(n)
        ]
        await self.arrivals.reach(before + n)
        return tasks


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    app = create_app(SimulatorConfig(seed=3))
    engine: Engine = app.state.simulator
    arrivals = Arrivals(app)
    async with serve_asgi(
        arrivals, lifespan="on", before_shutdown=engine.begin_shutdown
    ) as base_url:
        settings = load_settings(
            {
                "PAYTABS_PROFILE_ID": str(DEFAULT_PROFILE_ID),
                "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
                "PAYTABS_BASE_URL": base_url,
                # The transport's read timeout ends a hung call, as at the defaults (27 s
                # against the breaker's 30 s), only sooner.
                "PAYTABS_TIMEOUT": "300",
                "PAYTABS_RETRY_ATTEMPTS": "0",
            }
        )
        clock = ManualClock()
        parts = build_gateway(settings, clock=clock)
        try:
            yield Rig(parts, clock, engine, arrivals)
        finally:
            await parts.aclose()


async def test_read_timeouts_of_calls_sent_before_a_later_answer_count_for_nothing(
    rig: Rig,
) -> None:
    breaker = rig.parts.breakers.get(Operation.QUERY)
    hung = await rig.hung_queries(HUNG)
    # The hang ends; a call sent after the hung ones is answered before they time out.
    rig.engine.set_faults(Faults())
    rig.clock.advance(1.0)
    assert await rig.parts.paytabs.query_cart("answered-later") == []
    results = await asyncio.gather(*hung, return_exceptions=True)
    assert all(isinstance(result, AmbiguousGatewayError) for result in results), results
    snapshot = breaker.snapshot()
    assert snapshot.state == "closed"  # the twelve read timeouts opened it
    assert (snapshot.window.failures, snapshot.window.timeouts) == (0, 0)
    assert snapshot.window.successes == 1


async def test_read_timeouts_with_no_later_answer_are_counted_as_timeouts(rig: Rig) -> None:
    breaker = rig.parts.breakers.get(Operation.QUERY)
    assert await rig.parts.paytabs.query_cart("answered-first") == []
    rig.clock.advance(1.0)
    hung = await rig.hung_queries(HUNG)
    results = await asyncio.gather(*hung, return_exceptions=True)
    assert all(isinstance(result, AmbiguousGatewayError) for result in results), results
    snapshot = breaker.snapshot()
    assert snapshot.state == "open"  # news: PayTabs answered nothing sent after the first one
    assert snapshot.window.timeouts == snapshot.window.failures >= 5
