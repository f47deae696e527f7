"""A ``PayTabs`` kept for the life of a process and called from one event loop after another:
what a sync web framework does when it runs each call under ``asyncio.run`` (or asgiref's
``async_to_sync``). Over real loopback sockets, against the simulator."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from paytabs_guard import HostedPageRequest, Money, PageOutcome, PayTabs
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import run_simulator
from testkit.threaded import entered_in_thread


def test_one_client_serves_one_asyncio_run_after_another() -> None:
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:
        paytabs = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
        )

        async def page(number: int) -> PageOutcome:
            return await paytabs.create_payment_page(
                HostedPageRequest(
                    cart_id=f"order-{number}",
                    amount=Money.of("150.00", "SAR"),
                    description="Membership",
                    callback_url="https://shop.example/paytabs/callback",
                    return_url="https://shop.example/thank-you",
                )
            )

        # plain asyncio.run, then uvloop's, alternating: every call gets its page, where every
        # second one failed with "Event loop is closed" (a connection of the loop before)
        pages = [
            asyncio.run(page(1)),
            uvloop.run(page(2)),
            asyncio.run(page(3)),
            uvloop.run(page(4)),
        ]
    assert [p.page and p.page.cart_id for p in pages] == [f"order-{n}" for n in range(1, 5)]
    assert len({p.tran_ref for p in pages}) == 4
    assert all(p.redirect_url and not p.resolved_by_query for p in pages)


def test_a_client_used_after_its_block_ended_says_so_at_once() -> None:
    """Not 3.9 s of retries ending in 'the request was never sent' (TransientGatewayError),
    as if PayTabs were down: a mistake in the caller's code is named, and counts for nothing
    against the breakers."""
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:

        async def after_the_block() -> None:
            async with PayTabs(
                profile_id=DEFAULT_PROFILE_ID,
                server_key=DEFAULT_SERVER_KEY,
                base_url=simulator.base_url,
            ) as paytabs:
                pass
            with pytest.raises(RuntimeError, match="client is closed"):
                await paytabs.query_cart("order-1")
            lifetimes = [s.lifetime for s in paytabs.registry.snapshot().values()]
            assert sum(life.calls for life in lifetimes) == 1  # one attempt: no retry
            assert sum(life.failures for life in lifetimes) == 0

        asyncio.run(after_the_block())
