"""Helpers for the simulator tests: a settable clock, a PayTabs-speaking client, a receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import httpx
from starlette.types import Receive, Scope, Send

from paytabs_simulator.config import DEFAULT_PROFILE_ID, DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import RunningSimulator, run_simulator
from testkit.clock import FakeClock

KEY = DEFAULT_SERVER_KEY
PROFILE_ID = DEFAULT_PROFILE_ID
START = datetime(2025, 1, 29, 9, 0, 0, tzinfo=UTC)
VISA = "4111111111111111"
FAST_RETRIES = (0.01, 0.02, 0.03, 0.04, 0.05)


def independent_hmac(key: str, message: bytes) -> str:
    """HMAC-SHA256 written out here so the tests never trust the simulator's own signer."""
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def independent_return_signature(fields: Mapping[str, str], key: str) -> str:
    signed = sorted((k, v) for k, v in fields.items() if k != "signature" and v != "")
    query = "&".join(
        f"{quote_plus(k, safe='')}={quote_plus(v, safe='').replace('~', '%7E')}" for k, v in signed
    )
    return independent_hmac(key, query.encode())


def page_body(**overrides: Any) -> dict[str, Any]:
    """A valid hosted-page request; ``None`` in overrides removes a field."""
    body: dict[str, Any] = {
        "profile_id": PROFILE_ID,
        "tran_type": "sale",
        "tran_class": "ecom",
        "cart_id": "cart-1",
        "cart_currency": "SAR",
        "cart_amount": 100,
        "cart_description": "Order 1",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


@dataclass
class Gateway:
    """A client of one running simulator, with shortcuts for the common PayTabs calls."""

    sim: RunningSimulator
    http: httpx.AsyncClient

    async def request(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/payment/request", json=body)

    async def create_page(self, **overrides: Any) -> dict[str, Any]:
        response = await self.request(page_body(**overrides))
        assert response.status_code == 200, response.text
        created: dict[str, Any] = response.json()
        return created

    async def pay(self, created: dict[str, Any], card: str = VISA, **extra: Any) -> dict[str, Any]:
        response = await self.http.post(
            f"/_sim/pages/{page_id(created)}/pay", json={"card_number": card, **extra}
        )
        assert response.status_code == 200, response.text
        paid: dict[str, Any] = response.json()
        return paid

    async def paid_transaction(self, card: str = VISA, **overrides: Any) -> dict[str, Any]:
        transaction: dict[str, Any] = (await self.pay(await self.create_page(**overrides), card))[
            "transaction"
        ]
        return transaction

    async def follow_up(
        self, tran_type: str, tran_ref: str, amount: Any, **overrides: Any
    ) -> httpx.Response:
        body = page_body(tran_type=tran_type, tran_ref=tran_ref, cart_amount=amount, **overrides)
        return await self.request(body)

    async def query(self, **fields: Any) -> httpx.Response:
        return await self.http.post("/payment/query", json={"profile_id": PROFILE_ID, **fields})

    async def sim_transactions(self, **params: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self.http.get("/_sim/transactions", params=params)
        ).json()
        return found

    async def set_faults(self, **faults: Any) -> None:
        response = await self.http.put("/_sim/faults", json=faults)
        assert response.status_code == 200, response.text


def page_id(created: dict[str, Any]) -> str:
    url: str = created["redirect_url"]
    return url.rsplit("/", 1)[1]


def sim_config(clock: FakeClock, **overrides: Any) -> SimulatorConfig:
    """The tests' usual settings: seeded, fake clock, callback retries in milliseconds."""
    settings: dict[str, Any] = {
        "clock": clock,
        "seed": 1234,
        "callback_retry_delays": FAST_RETRIES,
        "callback_timeout_seconds": 2,
    }
    return SimulatorConfig(**(settings | overrides))


@asynccontextmanager
async def gateway(config: SimulatorConfig) -> AsyncIterator[Gateway]:
    async with (
        run_simulator(config) as sim,
        httpx.AsyncClient(
            base_url=sim.base_url, headers={"authorization": KEY}, trust_env=False, timeout=5
        ) as http,
    ):
        yield Gateway(sim, http)


@dataclass(frozen=True)
class ReceivedCallback:
    body: bytes
    headers: dict[str, str]
    status_sent: int


class CallbackReceiver:
    """A merchant endpoint (raw ASGI) that fails its first ``fail_first`` deliveries."""

    def __init__(self, fail_first: int = 0, failure_status: int = 500) -> None:
        self.fail_first = fail_first
        self.failure_status = failure_status
        self.received: list[ReceivedCallback] = []
        self._arrived = asyncio.Event()
        self.url = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status = self.failure_status if len(self.received) < self.fail_first else 200
        headers = {key.decode(): value.decode() for key, value in scope["headers"]}
        self.received.append(ReceivedCallback(b"".join(chunks), headers, status))
        self._arrived.set()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def reset(self) -> None:
        self.received.clear()
        self.fail_first = 0
        self.failure_status = 500

    @property
    def accepted(self) -> list[ReceivedCallback]:
        return [callback for callback in self.received if callback.status_sent == 200]

    async def wait_for(self, count: int, within: float = 5.0) -> list[ReceivedCallback]:
        """Wait until ``count`` deliveries have arrived (accepted or not)."""
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received
