"""A ``PayTabs`` kept for the life of a process and called from one event loop after another:
what a sync web framework does when it runs each call under ``asyncio.run`` (or asgiref's
``async_to_sync``). Over real loopback sockets, against the simulator, on both HTTP paths: the
lean transport (httptools installed) and httpx's own (a plain ``pip install paytabs-guard``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
import pytest
import uvloop

from paytabs_guard import (
    DEFAULT_BREAKER,
    AmbiguousGatewayError,
    HostedPageRequest,
    Money,
    PageOutcome,
    PayTabs,
    RetryConfig,
    TokenChargeRequest,
    Transaction,
    TransientGatewayError,
)
from paytabs_guard.resilience import BreakerEvent, EventType
from paytabs_simulator.config import (
    DEFAULT_PROFILE_ID,
    DEFAULT_SERVER_KEY,
    SimulatorConfig,
    utc_now,
)
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import run_simulator
from testkit.threaded import entered_in_thread
from testkit.transports import open_connections_to


def _request(number: int, *, tokenise: bool = False) -> HostedPageRequest:
    return HostedPageRequest(
        cart_id=f"order-{number}",
        amount=Money.of("150.00", "SAR"),
        description="Membership",
        callback_url="https://shop.example/paytabs/callback",
        return_url="https://shop.example/thank-you",
        tokenise=2 if tokenise else None,
    )


def test_one_client_serves_one_asyncio_run_after_another(http_path: str) -> None:
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:
        paytabs = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
        )

        async def page(number: int) -> PageOutcome:
            return await paytabs.create_payment_page(_request(number))

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


def test_every_token_charge_under_its_own_asyncio_run_succeeds_once(http_path: str) -> None:
    """The money case: a charge that failed with "Event loop is closed" on httpx's path had
    reached PayTabs all the same, so a shop that took the error at its word charged again."""
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:
        paytabs = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
        )
        page = asyncio.run(paytabs.create_payment_page(_request(0, tokenise=True)))
        assert page.page is not None
        paid = httpx.post(
            f"{simulator.base_url}/_sim/pages/{page.page.redirect_url.rsplit('/', 1)[-1]}/pay",
            json={"card_number": "4111111111111111"},
        ).json()["transaction"]

        def charge(number: int) -> Transaction:
            request = TokenChargeRequest(
                token=paid["token"],
                tran_ref=paid["tran_ref"],
                cart_id=f"month-{number}",
                amount=Money.of("25.00", "SAR"),
                description="Monthly",
            )
            return asyncio.run(paytabs.charge_token(request, known_tran_refs=()))

        charges = [charge(number) for number in range(1, 5)]
        held = [
            httpx.get(f"{simulator.base_url}/_sim/transactions", params={"cart_id": f"month-{n}"})
            .raise_for_status()
            .json()
            for n in range(1, 5)
        ]
    assert [c.payment_result and c.payment_result.response_status for c in charges] == ["A"] * 4
    assert [[t["tran_ref"] for t in cart] for cart in held] == [[c.tran_ref] for c in charges]


def test_each_loop_closes_its_connections_as_it_ends(http_path: str) -> None:
    """Connections made on a loop are closed when ``asyncio.run`` ends it: none is left open
    (its descriptor held until the garbage collector) however many loops come and go."""
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:
        port = httpx.URL(simulator.base_url).port
        assert port is not None
        paytabs = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
        )
        left_open = []
        for number in range(200):
            asyncio.run(paytabs.query_cart(f"order-{number}"))
            left_open.append(open_connections_to(port))
    assert left_open == [0] * 200


async def _used_up(base_url: str, *, breakers_open: bool = False) -> PayTabs:
    """A client whose ``async with`` block has ended (its breakers forced open inside it)."""
    async with PayTabs(
        profile_id=DEFAULT_PROFILE_ID, server_key=DEFAULT_SERVER_KEY, base_url=base_url
    ) as paytabs:
        for name in paytabs.registry.names() if breakers_open else ():
            paytabs.registry.get(name).force_open()
    return paytabs


def test_a_client_used_after_its_block_ended_says_so_at_once() -> None:
    """Not 3.9 s of retries ending in 'the request was never sent' (TransientGatewayError),
    as if PayTabs were down: a mistake in the caller's code is named, and counts for nothing
    against the breakers."""
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:

        async def after_the_block() -> None:
            paytabs = await _used_up(simulator.base_url)
            with pytest.raises(RuntimeError, match="client is closed"):
                await paytabs.query_cart("order-1")
            lifetimes = [s.lifetime for s in paytabs.registry.snapshot().values()]
            # Checked before the breakers: no attempt, no retry, nothing counted.
            assert sum(life.calls for life in lifetimes) == 0

        asyncio.run(after_the_block())


def test_a_client_used_after_its_block_ended_says_so_even_with_its_breakers_open() -> None:
    """Every operation checks "closed" before its breaker: with the create breaker open when
    the block ended (PayTabs was down), a create raised CircuitOpenError, a gateway error,
    while a query raised RuntimeError."""
    with entered_in_thread(lambda: run_simulator(SimulatorConfig())) as simulator:

        async def after_the_block() -> None:
            paytabs = await _used_up(simulator.base_url, breakers_open=True)
            charge = TokenChargeRequest(
                token="T" * 32,
                tran_ref="TST0000000000001",
                cart_id="month-1",
                amount=Money.of("25.00", "SAR"),
                description="Monthly",
            )
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "create_payment_page": lambda: paytabs.create_payment_page(_request(1)),
                "query_cart": lambda: paytabs.query_cart("order-1"),
                "query_transaction": lambda: paytabs.query_transaction("TST0000000000001"),
                "charge_token": lambda: paytabs.charge_token(charge),
                "query_token": lambda: paytabs.query_token("T" * 32),
                "delete_token": lambda: paytabs.delete_token("T" * 32),
            }
            raised: dict[str, str] = {}
            for name, call in calls.items():
                try:
                    await call()
                except RuntimeError:  # ClientClosed, a RuntimeError as documented
                    raised[name] = "RuntimeError"
                except Exception as error:  # the class is what is checked
                    raised[name] = type(error).__name__
            assert raised == dict.fromkeys(calls, "RuntimeError")

        asyncio.run(after_the_block())


def test_start_and_aclose_work_on_a_loop_after_the_one_the_prober_first_ran_on(
    http_path: str,
) -> None:
    """``start()`` under one ``asyncio.run`` and again under the next: the prober ran only on
    the first loop (its task, cancelled as that loop ended, was taken for a running one), so an
    open breaker was never probed again; and ``aclose()`` under a later loop raised "Event loop
    is closed" and left the connections open."""
    with entered_in_thread(
        lambda: run_simulator(SimulatorConfig(faults=Faults(down=True)))
    ) as simulator:
        paytabs = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
            retry=RetryConfig(retries=0),
            # one failure opens a breaker, and its probes follow at once
            breaker=DEFAULT_BREAKER.with_recovery(
                min_open_time=60.0, open_jitter=0.0, probe_interval=0.01, consecutive_failures=1
            ),
        )

        async def probed_after_an_outage() -> None:
            probes: asyncio.Queue[BreakerEvent] = asyncio.Queue()

            def on_event(event: BreakerEvent) -> None:
                if event.type is EventType.PROBE:
                    probes.put_nowait(event)

            unsubscribe = paytabs.registry.subscribe(on_event)
            try:
                paytabs.start()
                with pytest.raises(TransientGatewayError):  # the simulator is down: 503
                    await paytabs.query_cart("order-1")
                assert paytabs.registry.get("query").state.value == "open"
                # the prober of this loop probes the open breaker (503 again: failed)
                event = await asyncio.wait_for(probes.get(), timeout=10)
                assert event.breaker == "query"
            finally:
                unsubscribe()
                paytabs.registry.get("query").reset()

        asyncio.run(probed_after_an_outage())
        uvloop.run(probed_after_an_outage())
        asyncio.run(paytabs.aclose())
        with pytest.raises(RuntimeError, match="client is closed"):
            asyncio.run(paytabs.query_cart("order-1"))


@pytest.mark.anyio
async def test_a_write_under_way_when_the_client_closes_is_reported_as_unknown(
    http_path: str,
) -> None:
    """A create that PayTabs took, its answer lost as the client closed (a shutdown while a
    call is out): the query that would resolve it found the client closed, and the caller got
    that RuntimeError ("use it inside the block"), which reads as a call that never left. It
    is the unknown outcome it is: AmbiguousGatewayError, the closing in its notes."""
    arrived = asyncio.Event()

    def clock() -> datetime:  # the simulator reads it as it takes the request
        arrived.set()
        return utc_now()

    # PayTabs takes the request, then its answer never comes (hang after the work)
    config = SimulatorConfig(clock=clock, faults=Faults(hang_rate=1.0, hang_phase="after"))
    async with run_simulator(config) as simulator:
        paytabs = PayTabs(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=DEFAULT_SERVER_KEY,
            base_url=simulator.base_url,
            timeout=2.0,  # the lean transport keeps a call under way to its timeout
        )
        create = asyncio.ensure_future(paytabs.create_payment_page(_request(9)))
        await asyncio.wait_for(arrived.wait(), timeout=10)
        await paytabs.aclose()
        with pytest.raises(AmbiguousGatewayError) as raised:
            await create
        assert "closed" in " ".join(getattr(raised.value, "__notes__", []))
        held = [t for t in simulator.engine.transactions.values() if t.cart_id == "order-9"]
    assert len(held) == 1  # it had been taken: "never sent" would have been wrong
