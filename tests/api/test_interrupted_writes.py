"""A write that reached PayTabs and then failed here keeps its Idempotency-Key.

An outside run refunded and charged twice under one key: a deploy's shutdown cancelled a
refund (and a saved-card charge) waiting for PayTabs' answer, a database blip failed one after
PayTabs had acted, and each time the key was released, so the merchant's retry, with the same
key as told, ran it again. Once a write has left for PayTabs the key is kept with a 502
``gateway-outcome-unknown`` that names the payment; before that, a failure still frees it.

The operations here are stand-ins that mark a write leaving (as the PayTabs gateway does) and
then fail; the keys live in the service's real store (SQLite).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import Response

from paytabs_guard.domain import Payment
from paytabs_guard.entrypoints.api.auth import ApiClient
from paytabs_guard.entrypoints.api.idempotency import (
    REPLAYED_HEADER,
    TTL_SECONDS,
    fingerprint,
    run_idempotent,
    run_idempotent_create,
    scope_of,
)
from paytabs_guard.service.gateway import GatewayNotReached
from paytabs_guard.service.gateway_calls import write_leaving
from paytabs_guard.service.payments import IdempotentCreate, KeyTaken
from paytabs_guard.service.ports import ClaimStatus

from .api_support import Service, new_key

pytestmark = pytest.mark.anyio

CLIENT = ApiClient(id="merchant", is_admin=False)
BODY = {"amount": "4.00"}
PAYMENT = "pay_0123456789abcdef01234567"


def post(path: str, **path_params: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http", "method": "POST", "path": path, "path_params": path_params,
        "headers": [], "query_string": b"", "state": {},
    }  # fmt: skip
    return Request(scope)


def storage_lost() -> Exception:
    return sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("connection lost"))


async def refund(service: Service, key: str, operation: Any) -> Response:
    request = post(f"/payments/v2/{PAYMENT}/refund", payment_id=PAYMENT)
    return await run_idempotent(
        request, service.container, CLIENT, key, BODY, operation, wait_seconds=0.0
    )


async def test_a_refund_that_failed_after_reaching_paytabs_is_never_run_again(
    service: Service,
) -> None:
    runs: list[str] = []

    async def reaches_paytabs_then_storage_fails() -> Response:
        runs.append("first")
        write_leaving("refund")
        raise storage_lost()

    async def again() -> Response:
        runs.append("again")
        return Response("{}", 200)

    key = new_key()
    first = await refund(service, key, reaches_paytabs_then_storage_fails)
    assert first.status_code == 502
    body = bytes(first.body).decode()
    assert "gateway-outcome-unknown" in body
    assert PAYMENT in body
    assert "nothing was recorded" not in body  # the 503's promise would be untrue
    replayed = await refund(service, key, again)
    assert replayed.status_code == 502
    assert replayed.headers[REPLAYED_HEADER] == "true"
    assert runs == ["first"]  # the retry did not refund again


async def test_a_refund_cancelled_while_paytabs_has_it_is_never_run_again(
    service: Service,
) -> None:
    entered = asyncio.Event()

    async def cancelled_at_paytabs() -> Response:
        write_leaving("refund")
        entered.set()
        await asyncio.Event().wait()  # PayTabs' answer never comes: the shutdown cancels
        raise AssertionError("unreachable")

    key = new_key()
    task = asyncio.ensure_future(refund(service, key, cancelled_at_paytabs))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def again() -> Response:
        raise AssertionError("the retry must not refund again")

    replayed = await refund(service, key, again)
    assert replayed.status_code == 502
    assert replayed.headers[REPLAYED_HEADER] == "true"


@pytest.mark.parametrize(
    "error",
    [storage_lost(), GatewayNotReached("PayTabs unreachable", 1.0)],
    ids=["storage", "not_reached"],
)
async def test_a_refund_that_failed_before_anything_left_frees_its_key(
    service: Service, error: Exception
) -> None:
    async def fails(*, sent: bool) -> Response:
        if sent:  # GatewayNotReached: its writes never reached PayTabs, whatever was tried
            write_leaving("refund")
        raise error

    key = new_key()
    with pytest.raises(type(error)):
        await refund(service, key, lambda: fails(sent=isinstance(error, GatewayNotReached)))
    done = await refund(service, key, lambda: _ok())
    assert done.status_code == 200
    assert REPLAYED_HEADER not in done.headers  # it ran: nothing had happened


async def _ok() -> Response:
    return Response("{}", 200, media_type="application/json")


async def test_a_charge_cancelled_while_paytabs_has_it_keeps_its_key(service: Service) -> None:
    # A saved card's charge (a create): its key is claimed with the payment it inserts.
    key = new_key()
    path = "/payments/v2/recurring"
    body = {"amount": "25.00", "currency": "SAR", "saved_card_id": "card_x"}
    container = service.container
    entered = asyncio.Event()

    async def claim(idempotency: IdempotentCreate | None) -> None:
        # What the create's first transaction does with the key (payment_steps.insert_claimed).
        assert idempotency is not None
        now = container.service.now()
        print_ = fingerprint("POST", path, body)
        found = await container.idempotency.claim(
            scope_of(CLIENT), key, print_, now=now, ttl_seconds=TTL_SECONDS
        )
        if found.status is not ClaimStatus.NEW:
            raise KeyTaken(found)
        idempotency.claimed, idempotency.payment_id = True, PAYMENT

    async def charge(idempotency: IdempotentCreate | None) -> Payment:
        await claim(idempotency)
        write_leaving("charge_token")
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def respond(_payment: Payment) -> Response:
        raise AssertionError("no answer came")

    async def run(create: Any) -> Response:
        return await run_idempotent_create(
            post(path), container, CLIENT, key, body, create, respond, wait_seconds=0.0
        )

    task = asyncio.ensure_future(run(charge))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def charge_again(idempotency: IdempotentCreate | None) -> Payment:
        await claim(idempotency)
        raise AssertionError("the retry must not charge the card again")

    replayed = await run(charge_again)
    assert replayed.status_code == 502
    assert PAYMENT in bytes(replayed.body).decode()
    assert replayed.headers[REPLAYED_HEADER] == "true"


async def test_a_key_whose_request_died_in_flight_is_answered_interrupted_not_run_again(
    service: Service,
) -> None:
    # kill -9 of the worker: nothing could be stored or released. An hour later the key is
    # past any request's lifetime; the retry hears so, and nothing runs.
    container, key = service.container, new_key()
    path = f"/payments/v2/{PAYMENT}/refund"
    an_hour_ago = container.service.now() - timedelta(hours=1)
    print_ = fingerprint("POST", path, BODY)
    claimed = await container.idempotency.claim(
        scope_of(CLIENT), key, print_, now=an_hour_ago, ttl_seconds=TTL_SECONDS
    )
    assert claimed.status is ClaimStatus.NEW

    async def again() -> Response:
        raise AssertionError("a request that died may have refunded: not again")

    answer = await refund(service, key, again)
    assert answer.status_code == 409
    body = bytes(answer.body).decode()
    assert "idempotency-key-interrupted" in body
    assert "new Idempotency-Key" in body
