"""Running the simulator: real sockets, clean shutdown, in-process use."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from paytabs_simulator.app import create_app
from paytabs_simulator.engine import Engine
from paytabs_simulator.server import run_simulator
from testkit.clock import FakeClock

from .support import KEY, VISA, CallbackReceiver, page_body, page_id, sim_config


@pytest.mark.anyio
async def test_run_simulator_serves_on_a_loopback_port(clock: FakeClock) -> None:
    async with run_simulator(sim_config(clock)) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert isinstance(sim.engine, Engine)
        assert sim.app.state.simulator is sim.engine
        async with httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as client:
            assert (await client.get("/_sim/health")).status_code == 200


@pytest.mark.anyio
async def test_shutdown_is_prompt_while_a_request_hangs(clock: FakeClock) -> None:
    loop = asyncio.get_running_loop()
    async with (
        run_simulator(sim_config(clock)) as sim,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False, timeout=30) as client,
    ):
        await client.put("/_sim/faults", json={"hang_rate": 1.0})
        hanging = asyncio.ensure_future(
            client.post("/payment/request", json=page_body(), headers={"authorization": KEY})
        )
        # Still unanswered after a while: the request is hanging inside the simulator.
        done, _ = await asyncio.wait({hanging}, timeout=0.2)
        assert not done
        assert sim.engine.stats["requests /payment/request"] == 1
        started = loop.time()
    with pytest.raises(httpx.TransportError):
        await hanging
    assert loop.time() - started < 1.5


@pytest.mark.anyio
async def test_in_process_use_with_asgi_transports(clock: FakeClock) -> None:
    """No sockets at all: client and callbacks both go through httpx.ASGITransport."""
    merchant = CallbackReceiver()
    config = sim_config(clock, callback_transport=httpx.ASGITransport(app=merchant))
    app = create_app(config)
    engine: Engine = app.state.simulator
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://paytabs.sim",
        headers={"authorization": KEY},
    ) as client:
        body = page_body(callback="http://merchant.test/ipn")
        created = (await client.post("/payment/request", json=body)).json()
        assert created["redirect_url"].startswith("http://paytabs.sim/payment/page/")
        await client.post(f"/_sim/pages/{page_id(created)}/pay", json={"card_number": VISA})
        [callback] = await merchant.wait_for(1)
    await engine.aclose()
    assert json.loads(callback.body)["tran_ref"] == created["tran_ref"]
