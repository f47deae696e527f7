"""Every fault kind, seen from the client's side of a real socket."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from paytabs_simulator.faults import Faults, operation_of
from testkit.clock import FakeClock

from .support import Gateway, gateway, page_body, page_id, sim_config


async def attempt(gw: Gateway, client_timeout: float = 5.0) -> httpx.Response:
    return await gw.http.post("/payment/request", json=page_body(), timeout=client_timeout)


@pytest.mark.anyio
async def test_error_before_records_nothing(gw: Gateway) -> None:
    await gw.set_faults(error_rate=1.0, error_statuses=[503], error_phase="before")
    response = await attempt(gw)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("text/html")
    assert await gw.sim_transactions() == []


@pytest.mark.anyio
async def test_error_after_records_the_transaction(gw: Gateway) -> None:
    await gw.set_faults(error_rate=1.0, error_statuses=[502], error_phase="after")
    response = await attempt(gw)
    assert response.status_code == 502
    assert "retry-after" not in response.headers
    [tx] = await gw.sim_transactions(cart_id="cart-1")
    await gw.set_faults()
    # A blind retry of the same request is now a duplicate; a query finds the attempt.
    assert (await attempt(gw)).status_code == 409
    found = (await gw.query(cart_id="cart-1")).json()
    assert [t["tran_ref"] for t in found] == [tx["tran_ref"]]


@pytest.mark.anyio
async def test_error_after_on_a_refund_still_refunds(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    await gw.set_faults(error_rate=1.0, error_statuses=[500], error_phase="after")
    assert (await gw.follow_up("refund", sale["tran_ref"], 100)).status_code == 500
    await gw.set_faults()
    refused = await gw.follow_up("refund", sale["tran_ref"], 1)
    assert refused.json()["code"] == 301


@pytest.mark.anyio
async def test_mixed_phase_is_reproducible_with_a_seed(clock: FakeClock) -> None:
    faults = Faults(error_rate=0.5, error_phase="mixed")

    async def run() -> list[tuple[int, int]]:
        outcomes = []
        async with gateway(sim_config(clock, seed=7, faults=faults)) as gw:
            for n in range(12):
                response = await gw.request(page_body(cart_id=f"cart-{n}"))
                outcomes.append((response.status_code, len(await gw.sim_transactions())))
        return outcomes

    first, second = await run(), await run()
    assert first == second
    statuses = {status for status, _ in first}
    assert 200 in statuses
    assert statuses - {200}


@pytest.mark.anyio
@pytest.mark.parametrize(("phase", "recorded"), [("before", 0), ("after", 1)])
async def test_reset_cuts_the_connection_mid_response(
    gw: Gateway, phase: str, recorded: int
) -> None:
    await gw.set_faults(reset_rate=1.0, reset_phase=phase)
    with pytest.raises(httpx.TransportError):
        await attempt(gw)
    assert len(await gw.sim_transactions()) == recorded


@pytest.mark.anyio
@pytest.mark.parametrize(("phase", "recorded"), [("before", 0), ("after", 1)])
async def test_hang_until_the_client_gives_up(gw: Gateway, phase: str, recorded: int) -> None:
    await gw.set_faults(hang_rate=1.0, hang_phase=phase)
    with pytest.raises(httpx.ReadTimeout):
        await attempt(gw, client_timeout=0.2)
    assert len(await gw.sim_transactions()) == recorded


@pytest.mark.anyio
async def test_hang_is_capped(gw: Gateway) -> None:
    await gw.set_faults(hang_rate=1.0, hang_max_seconds=0.05)
    with pytest.raises(httpx.TransportError):
        await attempt(gw, client_timeout=3)


@pytest.mark.anyio
async def test_outage_window_follows_the_simulator_clock(gw: Gateway, clock: FakeClock) -> None:
    await gw.set_faults(outages=[{"start": 60, "end": 120, "mode": "status", "status": 503}])
    assert (await gw.query(cart_id="x")).status_code == 200
    clock.advance(60)
    down = await gw.query(cart_id="x")
    assert (down.status_code, down.headers["retry-after"]) == (503, "1")
    clock.advance(59)
    assert (await gw.query(cart_id="x")).status_code == 503
    clock.advance(1)
    assert (await gw.query(cart_id="x")).status_code == 200


@pytest.mark.anyio
async def test_outage_in_reset_mode(gw: Gateway) -> None:
    await gw.set_faults(outages=[{"start": 0, "end": 10, "mode": "reset"}])
    with pytest.raises(httpx.TransportError):
        await attempt(gw)
    assert await gw.sim_transactions() == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("settings", "expected"),
    [({"down_mode": "status", "down_status": 502}, 502), ({"down_mode": "reset"}, None)],
)
async def test_down_toggle(gw: Gateway, settings: dict[str, Any], expected: int | None) -> None:
    await gw.set_faults(down=True, **settings)
    if expected is None:
        with pytest.raises(httpx.TransportError):
            await attempt(gw)
    else:
        assert (await attempt(gw)).status_code == expected
    patch = await gw.http.patch("/_sim/faults", json={"down": False})
    assert patch.status_code == 200
    assert (await attempt(gw)).status_code == 200


@pytest.mark.anyio
async def test_down_gateway_leaves_page_and_test_api_alone(gw: Gateway) -> None:
    created = await gw.create_page()
    await gw.set_faults(down=True)
    assert (await gw.http.get(f"/payment/page/{page_id(created)}")).status_code == 200
    assert (await gw.pay(created))["transaction"]["payment_result"]["response_status"] == "A"
    assert (await gw.http.get("/_sim/transactions")).status_code == 200
    assert (await gw.query(cart_id="cart-1")).status_code == 503


@pytest.mark.anyio
async def test_fault_paths_choose_the_faulted_endpoints(gw: Gateway) -> None:
    await gw.set_faults(down=True, fault_paths=["/payment/query"])
    assert (await attempt(gw)).status_code == 200
    assert (await gw.query(cart_id="cart-1")).status_code == 503


@pytest.mark.anyio
async def test_latency_is_added(gw: Gateway) -> None:
    await gw.set_faults(latency_ms=150, latency_jitter_ms=20)
    started = time.monotonic()
    assert (await gw.query(cart_id="x")).status_code == 200
    assert time.monotonic() - started >= 0.15


@pytest.mark.anyio
async def test_latency_spikes(gw: Gateway) -> None:
    await gw.set_faults(latency_spike_rate=1.0, latency_spike_ms=120)
    started = time.monotonic()
    await gw.query(cart_id="x")
    assert time.monotonic() - started >= 0.12


@pytest.mark.anyio
async def test_faults_set_at_start_apply(clock: FakeClock) -> None:
    config = sim_config(clock, faults=Faults(error_rate=1.0, error_statuses=[504]))
    async with gateway(config) as gw:
        assert (await attempt(gw)).status_code == 504
        stats = (await gw.http.get("/_sim/stats")).json()
    assert stats["counters"]["faults error before (rate)"] == 1
    assert stats["counters"]["requests /payment/request"] == 1


@pytest.mark.anyio
async def test_partial_outage_takes_down_only_the_named_operations(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    await gw.set_faults(
        outages=[{"start": 0, "end": 60, "mode": "status", "operations": ["create"]}]
    )
    assert (await attempt(gw)).status_code == 503
    # Queries and follow-ups share the gateway but not its outage; the follow-up shares the
    # create's path, /payment/request, and is told apart by its body.
    assert (await gw.query(cart_id="cart-1")).status_code == 200
    refund = await gw.follow_up("refund", sale["tran_ref"], 1, cart_id="refund-1")
    assert refund.status_code == 200, refund.text
    assert refund.json()["payment_result"]["response_status"] == "A"


@pytest.mark.anyio
async def test_partial_outage_of_follow_ups_leaves_create_up(gw: Gateway) -> None:
    sale = await gw.paid_transaction()
    await gw.set_faults(
        outages=[{"start": 0, "end": 60, "mode": "reset", "operations": ["follow_up", "query"]}]
    )
    assert (await gw.request(page_body(cart_id="cart-2"))).status_code == 200
    with pytest.raises(httpx.TransportError):
        await gw.follow_up("refund", sale["tran_ref"], 1, cart_id="refund-1")
    with pytest.raises(httpx.TransportError):
        await gw.query(cart_id="cart-1")


@pytest.mark.anyio
async def test_partial_outage_ends_with_its_window(gw: Gateway, clock: FakeClock) -> None:
    await gw.set_faults(outages=[{"start": 0, "end": 5, "operations": ["create"]}])
    assert (await attempt(gw)).status_code == 503
    clock.advance(5)
    assert (await attempt(gw)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("operations", [[], ["refund"], "create"])
async def test_partial_outage_refuses_unknown_operations(gw: Gateway, operations: Any) -> None:
    response = await gw.http.put(
        "/_sim/faults", json={"outages": [{"start": 0, "end": 5, "operations": operations}]}
    )
    assert response.status_code == 422
    assert "operations" in response.text


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/payment/query", b"{}", "query"),
        ("/payment/token", b"{}", "token"),
        ("/payment/token/delete", b"{}", "token"),
        ("/payment/request", b'{"tran_type": "sale", "tran_class": "ecom"}', "create"),
        ("/payment/request", b'{"tran_type": "Refund", "tran_class": "ecom"}', "follow_up"),
        ("/payment/request", b'{"tran_type": "void"}', "follow_up"),
        ("/payment/request", b'{"tran_type": "sale", "tran_class": "recurring"}', "token"),
        ("/payment/request", b"not json", "create"),
        ("/payment/request", b"[1]", "create"),
    ],
)
def test_operation_of_reads_the_family(path: str, body: bytes, expected: str) -> None:
    assert operation_of(path, body) == expected
