"""Use cases against real parts: SQLite or PostgreSQL, and the simulator over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql import create_engine, sql_unit_of_work_factory, upgrade
from paytabs_guard.bootstrap import GatewayParts, build_gateway, service_urls
from paytabs_guard.service.payments import PaymentDeps
from paytabs_guard.settings import load_settings
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import RunningSimulator, run_simulator
from testkit.clock import FakeClock


@dataclass
class World:
    deps: PaymentDeps
    engine: AsyncEngine
    database_url: str
    simulator: RunningSimulator
    sim: httpx.AsyncClient
    parts: GatewayParts
    clock: FakeClock

    async def faults(self, **settings: object) -> None:
        (await self.sim.put("/_sim/faults", json=settings)).raise_for_status()

    async def pay(self, redirect_url: str, card: str = "4111111111111111") -> dict[str, Any]:
        page_id = redirect_url.rsplit("/", 1)[-1]
        paid = await self.sim.post(
            f"/_sim/pages/{page_id}/pay", json={"card_number": card, "cvv": "123"}
        )
        paid.raise_for_status()
        body: dict[str, Any] = paid.json()
        return body

    async def outbox_types(self, payment_id: str) -> list[str]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT type FROM outbox WHERE payment_id = :id ORDER BY seq"),
                {"id": payment_id},
            )
            return [row[0] for row in rows]

    async def gateway_transactions(self, cart_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self.sim.get("/_sim/transactions", params={"cart_id": cart_id})
        ).json()
        return found


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def gateway_for(base_url: str, **env: str) -> GatewayParts:
    settings = load_settings(
        {
            "PAYTABS_PROFILE_ID": str(DEFAULT_PROFILE_ID),
            "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
            "PAYTABS_BASE_URL": base_url,
            "PAYTABS_TIMEOUT": "2000",
            "PAYTABS_RETRY_DELAY": "1",
            "PAYTABS_RETRY_MAX_DELAY": "10",
            **env,
        }
    )
    return build_gateway(settings)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    await upgrade(database_url)
    engine = create_engine(database_url)
    # Starts at the real present: the simulator behind the use cases keeps its own real clock.
    clock = FakeClock(datetime.now(UTC))
    config = SimulatorConfig(seed=11, callback_retry_delays=(0.01,))
    async with (
        run_simulator(config) as simulator,
        httpx.AsyncClient(base_url=simulator.base_url) as sim,
    ):
        parts = gateway_for(simulator.base_url)
        deps = PaymentDeps(
            uow=sql_unit_of_work_factory(engine),
            gateway=parts.gateway,
            clock=clock,
            profile_id=DEFAULT_PROFILE_ID,
            # nothing listens here: these tests apply results themselves or reconcile
            urls=service_urls("http://127.0.0.1:9"),
        )
        try:
            yield World(deps, engine, database_url, simulator, sim, parts, clock)
        finally:
            await parts.aclose()
            await engine.dispose()
