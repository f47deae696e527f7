"""The PayTabs client against the simulator over a real loopback socket: every operation and
every error class, and the full round trip of issue 2 (create, pay on the hosted page, signed
callback, query, partial refund, refund beyond the captured amount refused)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paytabs_guard.adapters.paytabs.client import PayTabsClient
from paytabs_guard.adapters.paytabs.errors import (
    AmbiguousGatewayError,
    AuthenticationFailed,
    DuplicateRequest,
    InvalidRequest,
    TransactionNotFound,
    TransientGatewayError,
)
from paytabs_guard.adapters.paytabs.signature import (
    InvalidSignature,
    verify_callback,
    verify_return,
)
from paytabs_guard.adapters.paytabs.transformers import (
    Address,
    FollowUpRequest,
    HostedPageRequest,
    PageTranType,
    PayTabsTransaction,
    TokenChargeRequest,
)
from paytabs_guard.domain import FollowUpType
from paytabs_guard.domain.money import Money
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import RunningSimulator, run_simulator

pytestmark = pytest.mark.anyio


@dataclass
class CallbackInbox:
    """Receives PayTabs callbacks, verifies them on the raw bytes and keeps the good ones."""

    keys: tuple[SecretStr, ...]
    received: list[PayTabsTransaction] = field(default_factory=list)
    rejected: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        try:
            verify_callback(body, request.headers.get("signature"), self.keys)
        except InvalidSignature as error:
            self.rejected += 1
            return PlainTextResponse(f"invalid signature: {error.reason}", status_code=401)
        self.received.append(PayTabsTransaction.model_validate_json(body))
        self.arrived.set()
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/callback", self.endpoint, methods=["POST"])])


KEY = SecretStr(DEFAULT_SERVER_KEY)
VISA = "4111111111111111"
THREE_DS = "4000000000000002"
DECLINED = "4000000000000010"


@dataclass
class Gateway:
    simulator: RunningSimulator
    client: PayTabsClient
    admin: httpx.AsyncClient

    async def pay(self, page_url: str, card: str = VISA, **extra: object) -> dict[str, Any]:
        page_id = urlsplit(page_url).path.rsplit("/", 1)[-1]
        response = await self.admin.post(
            f"/_sim/pages/{page_id}/pay",
            json={"card_number": card, "cvv": "123", "expiry_month": 12, **extra},
        )
        response.raise_for_status()
        paid: dict[str, Any] = response.json()
        return paid

    async def faults(self, **settings: object) -> None:
        (await self.admin.put("/_sim/faults", json=settings)).raise_for_status()

    async def transactions(self, cart_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self.admin.get("/_sim/transactions", params={"cart_id": cart_id})
        ).json()
        return found


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    config = SimulatorConfig(seed=42, callback_retry_delays=(0.01, 0.02, 0.04, 0.08, 0.16))
    async with (
        run_simulator(config) as simulator,
        PayTabsClient(
            profile_id=DEFAULT_PROFILE_ID,
            server_key=KEY,
            base_url=simulator.base_url,
            timeout_seconds=5,
        ) as client,
        httpx.AsyncClient(base_url=simulator.base_url) as admin,
    ):
        yield Gateway(simulator, client, admin)


def cart() -> str:
    return f"cart-{secrets.token_hex(6)}"


def page(
    cart_id: str, amount: str = "100.00", currency: str = "SAR", **kw: Any
) -> HostedPageRequest:
    return HostedPageRequest(
        cart_id=cart_id, amount=Money.of(amount, currency), description="Order", **kw
    )


def refund(tran_ref: str, cart_id: str, amount: str, currency: str = "SAR") -> FollowUpRequest:
    return FollowUpRequest(
        FollowUpType.REFUND, tran_ref, cart_id, Money.of(amount, currency), "refund"
    )


async def test_round_trip_create_pay_callback_query_refund_and_over_refund_refused(
    gateway: Gateway,
) -> None:
    inbox = CallbackInbox(keys=(KEY,))
    cart_id = cart()
    async with serve_app(inbox.app()) as receiver, httpx.AsyncClient() as browser:
        created = await gateway.client.create_payment_page(
            page(
                cart_id,
                "150.000",
                "KWD",
                callback_url=f"{receiver}/callback",
                return_url=f"{receiver}/return",
                customer=Address(name="Layla Haddad", email="layla@example.com"),
            )
        )
        assert created.cart_amount == "150.000"
        assert created.tran_type == "Sale"

        # the customer pays on the real hosted page: HTML form, then the 3-D Secure step
        form = await browser.get(created.redirect_url)
        assert form.status_code == 200
        assert "<form" in form.text
        challenge = await browser.post(
            created.redirect_url,
            data={"card_number": THREE_DS, "expiry_month": "12", "expiry_year": "2031",
                  "cvv": "123", "cardholder": "Layla Haddad"},
        )  # fmt: skip
        assert challenge.status_code == 200
        finished = await browser.post(f"{created.redirect_url}/3ds")
        assert finished.status_code == 200
        # the browser is sent back with a signed form; the signature verifies with our code
        fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', finished.text))
        assert fields["respStatus"] == "A"
        verify_return(fields, [KEY])

        await asyncio.wait_for(inbox.arrived.wait(), timeout=5)
    callback = inbox.received[0]
    assert callback.tran_ref == created.tran_ref
    assert callback.payment_result is not None
    assert callback.payment_result.response_status == "A"
    assert inbox.rejected == 0

    queried = await gateway.client.query_transaction(created.tran_ref)
    assert queried.payment_result is not None
    assert queried.payment_result.response_status == "A"
    assert queried.tran_total == "150.000"

    partial = await gateway.client.follow_up(refund(created.tran_ref, cart_id, "50.250", "KWD"))
    assert partial.previous_tran_ref == created.tran_ref
    assert partial.tran_type == "Refund"
    assert partial.payment_result is not None
    assert partial.payment_result.response_status == "A"

    with pytest.raises(InvalidRequest) as refused:
        await gateway.client.follow_up(refund(created.tran_ref, cart_id, "100.000", "KWD"))
    assert refused.value.code == 301
    assert [t["tran_type"] for t in await gateway.transactions(cart_id)] == ["Sale", "Refund"]


async def test_query_by_cart_lists_every_attempt_and_unknown_cart_is_empty(
    gateway: Gateway,
) -> None:
    cart_id = cart()
    created = await gateway.client.create_payment_page(page(cart_id))
    unpaid = await gateway.client.query_cart(cart_id)
    assert [t.tran_ref for t in unpaid] == [created.tran_ref]
    assert unpaid[0].payment_result is None  # a page that exists but nobody paid yet
    await gateway.pay(created.redirect_url, DECLINED)
    [declined] = await gateway.client.query_cart(cart_id)
    assert declined.payment_result is not None
    assert declined.payment_result.response_status == "D"
    assert await gateway.client.query_cart(cart()) == []


async def test_auth_capture_partial_then_release_rules(gateway: Gateway) -> None:
    cart_id = cart()
    created = await gateway.client.create_payment_page(page(cart_id, tran_type=PageTranType.AUTH))
    await gateway.pay(created.redirect_url)
    capture = await gateway.client.follow_up(
        FollowUpRequest(FollowUpType.CAPTURE, created.tran_ref, cart_id, Money.of("40", "SAR"), "c")
    )
    assert capture.tran_type == "Capture"
    assert capture.previous_tran_ref == created.tran_ref
    with pytest.raises(InvalidRequest) as not_voidable:
        await gateway.client.follow_up(
            FollowUpRequest(
                FollowUpType.VOID, created.tran_ref, cart_id, Money.of("60", "SAR"), "v"
            )
        )
    assert not_voidable.value.code == 302
    refunded = await gateway.client.follow_up(refund(capture.tran_ref, cart_id, "40.00"))
    assert refunded.previous_tran_ref == capture.tran_ref


@pytest.mark.parametrize("kind", [FollowUpType.VOID, FollowUpType.RELEASE])
async def test_void_and_release_of_an_uncaptured_auth(gateway: Gateway, kind: FollowUpType) -> None:
    cart_id = cart()
    created = await gateway.client.create_payment_page(page(cart_id, tran_type=PageTranType.AUTH))
    await gateway.pay(created.redirect_url)
    done = await gateway.client.follow_up(
        FollowUpRequest(kind, created.tran_ref, cart_id, Money.of("100", "SAR"), "v")
    )
    assert done.tran_type.lower() == kind.value
    assert done.payment_result is not None
    assert done.payment_result.response_status == "A"


async def test_recurring_charge_token_query_and_delete(gateway: Gateway) -> None:
    cart_id = cart()
    created = await gateway.client.create_payment_page(page(cart_id, tokenise=2))
    paid = await gateway.pay(created.redirect_url)
    token = paid["transaction"]["token"]
    assert token

    origin = await gateway.client.query_token(token)
    assert origin.tran_ref == created.tran_ref

    charge = TokenChargeRequest(token, created.tran_ref, cart(), Money.of("25", "SAR"), "renewal")
    charged = await gateway.client.charge_token(charge)
    assert charged.payment_result is not None
    assert charged.payment_result.response_status == "A"
    assert charged.tran_class.lower() == "recurring"

    await gateway.client.delete_token(token)
    with pytest.raises(InvalidRequest) as invalid:
        await gateway.client.charge_token(
            TokenChargeRequest(token, created.tran_ref, cart(), Money.of("25", "SAR"), "again")
        )
    assert invalid.value.code == 209


async def test_wrong_key_and_wrong_profile_fail_authentication(gateway: Gateway) -> None:
    base = gateway.simulator.base_url
    for profile_id, key in [(DEFAULT_PROFILE_ID, "S-WRONG"), (1, DEFAULT_SERVER_KEY)]:
        async with PayTabsClient(
            profile_id=profile_id, server_key=SecretStr(key), base_url=base
        ) as wrong:
            with pytest.raises(AuthenticationFailed) as caught:
                await wrong.query_cart("x")
        assert caught.value.code == 1
        assert caught.value.http_status == 401


async def test_invalid_requests_carry_paytabs_codes(gateway: Gateway) -> None:
    with pytest.raises(InvalidRequest) as currency:
        await gateway.client.create_payment_page(page(cart(), "10.00", "JPY"))
    assert currency.value.code == 206
    with pytest.raises(TransactionNotFound) as missing:
        await gateway.client.query_transaction("TST0000000000000")
    assert missing.value.code == 113


async def test_identical_resubmission_is_a_duplicate_request(gateway: Gateway) -> None:
    request = page(cart())
    await gateway.client.create_payment_page(request)
    with pytest.raises(DuplicateRequest) as duplicate:
        await gateway.client.create_payment_page(request)
    assert duplicate.value.code == 4
    assert duplicate.value.http_status == 409
    assert len(await gateway.transactions(request.cart_id)) == 1


async def test_503_before_processing_is_transient_and_nothing_was_recorded(
    gateway: Gateway,
) -> None:
    await gateway.faults(error_rate=1.0, error_statuses=[503], error_phase="before")
    request = page(cart())
    with pytest.raises(TransientGatewayError) as caught:
        await gateway.client.create_payment_page(request)
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 1.0
    await gateway.faults()
    assert await gateway.transactions(request.cart_id) == []


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_5xx_after_processing_is_ambiguous_and_the_transaction_exists(
    gateway: Gateway, status: int
) -> None:
    await gateway.faults(error_rate=1.0, error_statuses=[status], error_phase="after")
    request = page(cart())
    with pytest.raises(AmbiguousGatewayError) as caught:
        await gateway.client.create_payment_page(request)
    assert caught.value.http_status == status
    await gateway.faults()
    assert len(await gateway.transactions(request.cart_id)) == 1


async def test_connection_reset_after_sending_is_ambiguous(gateway: Gateway) -> None:
    await gateway.faults(reset_rate=1.0, reset_phase="after")
    request = page(cart())
    with pytest.raises(AmbiguousGatewayError):
        await gateway.client.create_payment_page(request)
    await gateway.faults()
    assert len(await gateway.transactions(request.cart_id)) == 1


async def test_a_hung_gateway_times_out_as_ambiguous(gateway: Gateway) -> None:
    await gateway.faults(hang_rate=1.0, hang_phase="after", hang_max_seconds=5)
    async with PayTabsClient(
        profile_id=DEFAULT_PROFILE_ID,
        server_key=KEY,
        base_url=gateway.simulator.base_url,
        timeout_seconds=0.2,
    ) as impatient:
        with pytest.raises(AmbiguousGatewayError, match="ReadTimeout"):
            await impatient.query_cart("x")


def patient_client(gateway: Gateway, *, connections: int) -> PayTabsClient:
    """A client with a 30 s timeout and only ``connections`` connections to the simulator."""
    return PayTabsClient(
        profile_id=DEFAULT_PROFILE_ID,
        server_key=KEY,
        base_url=gateway.simulator.base_url,
        timeout_seconds=30,
        max_connections=connections,
    )


async def test_with_every_connection_hung_a_call_fails_at_once_as_never_sent(
    gateway: Gateway,
) -> None:
    """Calls hanging at PayTabs hold every connection. The next call waited for one for its
    whole timeout (27 s with the defaults), seen by nobody as a failure; now it fails after
    POOL_WAIT_SECONDS as never sent: safe to send again, and counted by the breaker."""
    await gateway.faults(hang_rate=1.0, hang_phase="before", hang_max_seconds=30)
    async with patient_client(gateway, connections=1) as client:
        hung = asyncio.create_task(client.query_cart("hangs"))
        await asyncio.sleep(0)  # (it takes the one connection)
        async with asyncio.timeout(10):  # far below the 30 s a call may take
            with pytest.raises(TransientGatewayError, match="PoolTimeout"):
                await client.query_cart("waits")
        hung.cancel()
        with contextlib.suppress(asyncio.CancelledError, AmbiguousGatewayError):
            await hung


async def test_a_burst_of_more_calls_than_connections_waits_its_turn(gateway: Gateway) -> None:
    """Eight calls on two connections, PayTabs answering each in 0.5 s: the last waits 1.5 s
    for a connection. All are answered; none fails as "never sent" (each such failure counts
    against the breaker, and ten before the first answer would open it on a healthy PayTabs)."""
    await gateway.faults(latency_ms=500)
    async with patient_client(gateway, connections=2) as client:
        calls = [client.query_cart(f"burst-{n}") for n in range(8)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes == [[]] * 8  # every one answered (no such cart), none an exception


async def test_nothing_listening_is_transient_because_nothing_was_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with PayTabsClient(
        profile_id=1, server_key=KEY, base_url=f"http://127.0.0.1:{port}", timeout_seconds=1
    ) as client:
        with pytest.raises(TransientGatewayError, match="ConnectError"):
            await client.create_payment_page(page(cart()))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
async def test_a_4xx_without_paytabs_error_body_is_no_paytabs_answer(
    gateway: Gateway, status: int
) -> None:
    """A proxy, WAF or maintenance page in front of PayTabs (the simulator's ``down_status``
    answers HTML) is not PayTabs refusing anything: a gateway failure, and for a write one that
    may have been forwarded first, so it is resolved by a query, never taken as a rejection."""
    await gateway.faults(down=True, down_status=status)
    request = page(cart())
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: gateway.client.create_payment_page(request),
        "query": lambda: gateway.client.query_cart(request.cart_id),
        "follow_up": lambda: gateway.client.follow_up(refund("TST1", request.cart_id, "1.00")),
        "token": lambda: gateway.client.delete_token("2C4655BE67A3E537C6B593FF60817AB9"),
    }
    for operation, call in calls.items():
        with pytest.raises(AmbiguousGatewayError) as caught:
            await call()
        assert caught.value.http_status == status
        assert caught.value.operation == operation
        assert caught.value.counts_against_gateway
        assert caught.value.needs_resolution
        assert not caught.value.retry_safe
    await gateway.faults()
    assert await gateway.transactions(request.cart_id) == []


async def test_a_429_without_paytabs_error_body_stays_transient(gateway: Gateway) -> None:
    # a rate limiter in front turned the request away before anything was done
    await gateway.faults(down=True, down_status=429)
    with pytest.raises(TransientGatewayError) as caught:
        await gateway.client.create_payment_page(page(cart()))
    assert (caught.value.http_status, caught.value.retry_after) == (429, 1.0)
