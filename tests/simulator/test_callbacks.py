"""Callbacks (IPN): signed compact JSON, retried until a 200, and the callback faults."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from .support import KEY, CallbackReceiver, Gateway, independent_hmac


async def pay_with_callback(
    gw: Gateway, receiver: CallbackReceiver, card: str = "4111111111111111", **overrides: Any
) -> dict[str, Any]:
    return await gw.paid_transaction(card, callback=receiver.url, **overrides)


async def callback_log(gw: Gateway) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await gw.http.get("/_sim/callbacks")).json()
    return entries


@pytest.mark.anyio
async def test_callback_is_signed_compact_json_of_the_transaction(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    paid = await pay_with_callback(gw, receiver, user_defined={"udf1": "طلب"})
    [callback] = await receiver.wait_for(1)
    assert callback.headers["signature"] == independent_hmac(KEY, callback.body)
    assert callback.headers["content-type"] == "application/json"
    assert callback.headers["user-agent"] == "Go-http-client/1.1"
    body = json.loads(callback.body)
    assert callback.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert "طلب".encode() in callback.body
    assert re.fullmatch(r"IPNS0001\.[0-9A-F]{8}\.[0-9A-F]{8}", body.pop("ipn_trace"))
    assert body == paid


@pytest.mark.anyio
async def test_callback_is_retried_until_accepted(gw: Gateway, receiver: CallbackReceiver) -> None:
    receiver.fail_first = 2
    paid = await pay_with_callback(gw, receiver)
    received = await receiver.wait_for(3)
    assert [callback.status_sent for callback in received] == [500, 500, 200]
    assert len({callback.body for callback in received}) == 1
    await gw.sim.engine.callbacks.wait_idle()
    log = await callback_log(gw)
    assert [(e["attempt"], e["status_code"]) for e in log] == [(1, 500), (2, 500), (3, 200)]
    assert {e["tran_ref"] for e in log} == {paid["tran_ref"]}


@pytest.mark.anyio
async def test_non_200_success_status_is_retried(gw: Gateway, receiver: CallbackReceiver) -> None:
    receiver.fail_first, receiver.failure_status = 1, 204
    await pay_with_callback(gw, receiver)
    received = await receiver.wait_for(2)
    assert [callback.status_sent for callback in received] == [204, 200]


@pytest.mark.anyio
async def test_callback_gives_up_after_five_retries(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    receiver.fail_first = 100
    await pay_with_callback(gw, receiver)
    await gw.sim.engine.callbacks.wait_idle()
    assert len(receiver.received) == 6
    assert [e["attempt"] for e in await callback_log(gw)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.anyio
async def test_unreachable_callback_is_logged_as_connection_error(gw: Gateway) -> None:
    await gw.paid_transaction(callback="http://127.0.0.1:9/nothing-listens-here")
    await gw.sim.engine.callbacks.wait_idle()
    log = await callback_log(gw)
    assert len(log) == 6
    assert all(e["status_code"] is None and e["error"] == "ConnectError" for e in log)


@pytest.mark.anyio
async def test_declined_and_cancelled_payments_are_notified(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    await pay_with_callback(gw, receiver, "4000000000000010")
    await pay_with_callback(gw, receiver, "4000000000000077", cart_id="cart-2")
    received = await receiver.wait_for(2)
    statuses = sorted(json.loads(c.body)["payment_result"]["response_status"] for c in received)
    assert statuses == ["C", "D"]


@pytest.mark.anyio
async def test_follow_up_with_callback_is_notified(gw: Gateway, receiver: CallbackReceiver) -> None:
    sale = await gw.paid_transaction()
    refund = (await gw.follow_up("refund", sale["tran_ref"], 10, callback=receiver.url)).json()
    [callback] = await receiver.wait_for(1)
    body = json.loads(callback.body)
    assert (body["tran_ref"], body["previous_tran_ref"]) == (refund["tran_ref"], sale["tran_ref"])
    assert callback.headers["signature"] == independent_hmac(KEY, callback.body)


@pytest.mark.anyio
async def test_settling_an_on_hold_payment_sends_a_new_callback(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    held = await pay_with_callback(gw, receiver, "4000000000000036")
    await receiver.wait_for(1)
    await gw.http.post(
        f"/_sim/transactions/{held['tran_ref']}/settle", json={"response_status": "A"}
    )
    received = await receiver.wait_for(2)
    statuses = [json.loads(c.body)["payment_result"]["response_status"] for c in received]
    assert statuses == ["H", "A"]


@pytest.mark.anyio
async def test_duplicate_fault_sends_the_same_callback_twice(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    await gw.set_faults(callback_duplicate_rate=1.0)
    await pay_with_callback(gw, receiver)
    first, second = await receiver.wait_for(2)
    assert first.body == second.body
    assert first.headers["signature"] == second.headers["signature"]


@pytest.mark.anyio
async def test_out_of_order_fault_sends_a_stale_pending_callback_after_the_final_one(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    await gw.set_faults(callback_out_of_order=True)
    await pay_with_callback(gw, receiver)
    final, stale = await receiver.wait_for(2)
    final_body, stale_body = json.loads(final.body), json.loads(stale.body)
    assert final_body["payment_result"]["response_status"] == "A"
    assert stale_body["payment_result"]["response_status"] == "P"
    assert stale_body["tran_ref"] == final_body["tran_ref"]
    assert stale_body["ipn_trace"] != final_body["ipn_trace"]
    assert stale.headers["signature"] == independent_hmac(KEY, stale.body)


@pytest.mark.anyio
async def test_withheld_callback_is_never_sent(gw: Gateway, receiver: CallbackReceiver) -> None:
    await gw.set_faults(callback_withhold_rate=1.0)
    paid = await pay_with_callback(gw, receiver)
    await gw.sim.engine.callbacks.wait_idle()
    assert receiver.received == []
    [entry] = await callback_log(gw)
    assert (entry["kind"], entry["tran_ref"], entry["attempt"]) == ("withheld", paid["tran_ref"], 0)


@pytest.mark.anyio
async def test_delayed_callback_arrives_after_the_delay(
    gw: Gateway, receiver: CallbackReceiver
) -> None:
    await gw.set_faults(callback_delay_ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pay_with_callback(gw, receiver)
    await receiver.wait_for(1)
    assert loop.time() - started >= 0.15
