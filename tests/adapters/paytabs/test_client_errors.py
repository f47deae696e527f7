"""The client's error classes, organised by what the caller must do next (httpx.MockTransport seam).

The same classes are exercised against the simulator over real HTTP in test_client_simulator.py;
here the narrow seam lets each transport failure be produced exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from paytabs_guard.adapters.paytabs.client import PayTabsClient
from paytabs_guard.adapters.paytabs.errors import (
    AmbiguousGatewayError,
    AuthenticationFailed,
    DuplicateRequest,
    InvalidRequest,
    PayTabsError,
    TransactionNotFound,
    TransientGatewayError,
)
from paytabs_guard.adapters.paytabs.transformers import HostedPageRequest
from paytabs_guard.domain.money import Money

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler) -> PayTabsClient:
    return PayTabsClient(
        profile_id=987654,
        server_key=SecretStr("S-KEY"),
        base_url="https://secure.paytabs.com",
        transport=httpx.MockTransport(handler),
    )


def page_request() -> HostedPageRequest:
    return HostedPageRequest(cart_id="c-1", amount=Money.of("10.50", "SAR"), description="d")


def error(status: int, code: int, message: str = "m") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": code, "message": message, "trace": "PMNT"})

    return handler


def answer(status: int, content: bytes) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content)

    return handler


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "kind", "retry_safe", "needs_resolution", "counts"),
    [
        (error(401, 1), AuthenticationFailed, False, False, False),
        (error(400, 101), InvalidRequest, False, False, False),
        (error(400, 206), InvalidRequest, False, False, False),
        (error(200, 102), InvalidRequest, False, False, False),
        (error(400, 113), TransactionNotFound, False, False, False),
        (error(409, 4), DuplicateRequest, False, True, False),
        (error(429, 0), TransientGatewayError, True, False, True),
        (error(503, 0), TransientGatewayError, True, False, True),
        (error(500, 0), AmbiguousGatewayError, False, True, True),
        (error(502, 0), AmbiguousGatewayError, False, True, True),
        (error(504, 0), AmbiguousGatewayError, False, True, True),
        (raising(httpx.ConnectError("refused")), TransientGatewayError, True, False, True),
        (raising(httpx.ConnectTimeout("slow")), TransientGatewayError, True, False, True),
        (raising(httpx.PoolTimeout("pool")), TransientGatewayError, True, False, True),
        (raising(httpx.ReadTimeout("read")), AmbiguousGatewayError, False, True, True),
        (raising(httpx.WriteTimeout("write")), AmbiguousGatewayError, False, True, True),
        (raising(httpx.ReadError("reset")), AmbiguousGatewayError, False, True, True),
        (raising(httpx.RemoteProtocolError("cut")), AmbiguousGatewayError, False, True, True),
        (answer(200, b"<html>"), AmbiguousGatewayError, False, True, True),
        (answer(200, b'{"x": 1}'), AmbiguousGatewayError, False, True, True),
        # a 4xx without PayTabs' error body is a proxy's, WAF's or maintenance page's
        (answer(403, b"<html>Forbidden</html>"), AmbiguousGatewayError, False, True, True),
        (answer(400, b"<html>Bad Request</html>"), AmbiguousGatewayError, False, True, True),
        (answer(404, b""), AmbiguousGatewayError, False, True, True),
        (answer(401, b"<html>"), AmbiguousGatewayError, False, True, True),
        (answer(409, b"<html>"), AmbiguousGatewayError, False, True, True),
        (answer(403, b'{"message": "Forbidden"}'), AmbiguousGatewayError, False, True, True),
        (answer(403, b'{"code": "WAF"}'), AmbiguousGatewayError, False, True, True),
        (answer(429, b"<html>"), TransientGatewayError, True, False, True),
        (error(403, 2), InvalidRequest, False, False, False),
    ],
)
async def test_each_failure_maps_to_the_class_that_says_what_to_do(
    handler: Handler,
    kind: type[PayTabsError],
    retry_safe: bool,
    needs_resolution: bool,
    counts: bool,
) -> None:
    async with client_for(handler) as client:
        with pytest.raises(kind) as caught:
            await client.create_payment_page(page_request())
    assert type(caught.value) is kind
    assert caught.value.retry_safe is retry_safe
    assert caught.value.needs_resolution is needs_resolution
    assert caught.value.counts_against_gateway is counts
    assert caught.value.operation == "create"


async def test_retry_after_is_read_from_the_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, headers={"Retry-After": "7"}, json={"code": 0, "message": "busy"}
        )

    async with client_for(handler) as client:
        with pytest.raises(TransientGatewayError) as caught:
            await client.query_transaction("TST1")
    assert caught.value.retry_after == 7.0


async def test_request_carries_raw_key_profile_and_exact_amount() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "tran_ref": "TST1", "tran_type": "Sale", "cart_id": "c-1", "cart_currency": "KWD",
                "cart_amount": "1.250", "redirect_url": "https://x/payment/page/AB",
                "profileId": 987654, "unknown_future_field": True,
            },
        )  # fmt: skip

    request = HostedPageRequest(cart_id="c-1", amount=Money.of("1.25", "KWD"), description="d")
    async with client_for(handler) as client:
        page = await client.create_payment_page(request)
    sent = seen[0]
    assert sent.headers["authorization"] == "S-KEY"
    assert sent.headers["content-type"] == "application/json"
    assert sent.content.count(b'"cart_amount":1.250') == 1
    body = json.loads(sent.content, parse_float=Decimal)
    assert body["profile_id"] == 987654
    assert body["tran_class"] == "ecom"
    assert body["cart_amount"] == Decimal("1.250")
    assert "callback" not in body  # nulls are stripped, as PayTabs' SDK does
    assert page.tran_ref == "TST1"
    assert page.redirect_url.endswith("/payment/page/AB")


async def test_query_by_cart_returns_every_attempt() -> None:
    def transaction(ref: str) -> dict[str, object]:
        return {
            "tran_ref": ref, "cart_id": "c-1", "cart_currency": "SAR", "cart_amount": "10.50",
            "tran_type": "Sale", "tran_class": "ECom",
            "payment_result": {"response_status": "A", "response_code": "G1"},
        }  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[transaction("T1"), transaction("T2")])

    async with client_for(handler) as client:
        found = await client.query_cart("c-1")
    assert [t.tran_ref for t in found] == ["T1", "T2"]
    assert found[0].payment_result is not None
    assert found[0].payment_result.response_status == "A"


async def test_repr_of_client_and_errors_hold_no_secret() -> None:
    async with client_for(error(401, 1)) as client:
        assert "S-KEY" not in repr(client)
        with pytest.raises(AuthenticationFailed) as caught:
            await client.query_transaction("T")
    assert "S-KEY" not in repr(caught.value)
