"""The `/_sim` test/admin API: faults, reset, inspection."""

from __future__ import annotations

from typing import Any

import pytest

from paytabs_simulator.faults import DEFAULT_FAULT_PATHS, Faults

from .support import CallbackReceiver, Gateway


@pytest.mark.anyio
async def test_faults_read_back_as_written(gw: Gateway) -> None:
    assert (await gw.http.get("/_sim/faults")).json() == Faults().model_dump(mode="json")
    written = {"error_rate": 0.25, "error_statuses": [502], "latency_ms": 5}
    response = await gw.http.put("/_sim/faults", json=written)
    assert response.status_code == 200
    current = (await gw.http.get("/_sim/faults")).json()
    assert {key: current[key] for key in written} == written
    assert current["fault_paths"] == DEFAULT_FAULT_PATHS
    assert gw.sim.engine.faults.error_rate == 0.25


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 0.1, "typo_rate": 1},
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_phase": "during"},
        {"error_statuses": [200]},
        {"error_statuses": []},
        {"latency_ms": -1},
        {"fault_paths": ["/_sim/faults"]},
        {"fault_paths": ["/payment/page/abc"]},
        {"fault_paths": ["payment/request"]},
        {"outages": [{"start": 10, "end": 5}]},
        {"outages": [{"start": 0, "end": 5, "mode": "explode"}]},
        {"down_status": 200},
        {"hang_max_seconds": 0},
    ],
)
async def test_invalid_faults_are_refused_and_change_nothing(
    gw: Gateway, body: dict[str, Any]
) -> None:
    for method in ("PUT", "PATCH"):
        response = await gw.http.request(method, "/_sim/faults", json=body)
        assert response.status_code == 422, (method, response.text)
    assert gw.sim.engine.faults == Faults()


@pytest.mark.anyio
async def test_patch_changes_only_the_named_settings(gw: Gateway) -> None:
    await gw.set_faults(latency_ms=5)
    response = await gw.http.patch("/_sim/faults", json={"refund_pending": True})
    assert response.status_code == 200
    assert (gw.sim.engine.faults.latency_ms, gw.sim.engine.faults.refund_pending) == (5, True)


@pytest.mark.anyio
async def test_reset_forgets_everything(gw: Gateway, receiver: CallbackReceiver) -> None:
    await gw.paid_transaction(callback=receiver.url)
    await receiver.wait_for(1)
    await gw.set_faults(latency_ms=1)
    assert (await gw.http.post("/_sim/reset")).json() == {"reset": True}
    assert await gw.sim_transactions() == []
    assert (await gw.http.get("/_sim/callbacks")).json() == []
    assert gw.sim.engine.faults == Faults()
    # The same request is no longer a duplicate either.
    await gw.create_page()


@pytest.mark.anyio
async def test_sim_transactions_filters(gw: Gateway) -> None:
    paid = await gw.paid_transaction()
    await gw.create_page(cart_id="cart-2")
    assert len(await gw.sim_transactions()) == 2
    assert [t["tran_ref"] for t in await gw.sim_transactions(tran_ref=paid["tran_ref"])] == [
        paid["tran_ref"]
    ]
    assert len(await gw.sim_transactions(cart_id="cart-2")) == 1


@pytest.mark.anyio
async def test_settle_refuses_final_and_unknown_transactions(gw: Gateway) -> None:
    paid = await gw.paid_transaction()
    assert (await gw.http.post(f"/_sim/transactions/{paid['tran_ref']}/settle")).status_code == 409
    assert (await gw.http.post("/_sim/transactions/TST0/settle")).status_code == 409
    pending = await gw.paid_transaction("4000000000000044", cart_id="cart-2")
    bad = await gw.http.post(
        f"/_sim/transactions/{pending['tran_ref']}/settle", json={"response_status": "Z"}
    )
    assert bad.status_code == 422


@pytest.mark.anyio
async def test_pay_requires_a_card_unless_cancelling(gw: Gateway) -> None:
    created = await gw.create_page()
    page = created["redirect_url"].rsplit("/", 1)[1]
    assert (await gw.http.post(f"/_sim/pages/{page}/pay", json={})).status_code == 422
    unknown = await gw.http.post("/_sim/pages/NOPE/pay", json={"card_number": "4111111111111111"})
    assert unknown.status_code == 404


@pytest.mark.anyio
async def test_health_and_docs(gw: Gateway) -> None:
    assert (await gw.http.get("/_sim/health")).json() == {"status": "pass"}
    assert (await gw.http.get("/_sim/openapi.json")).status_code == 200
