"""The service over real HTTP on loopback, next to a real simulator, and helpers to drive it.

``running_service`` serves the app before building the container, so PUBLIC_BASE_URL (where
the simulator sends callbacks and browsers) is the real address: the socket is bound first and
the app plugged in once it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from starlette.types import ASGIApp, Receive, Scope, Send

from paytabs_guard.adapters.sql.tables import outbox, webhook_inbox
from paytabs_guard.bootstrap import Container, build_container
from paytabs_guard.entrypoints.api.app import create_app
from paytabs_guard.entrypoints.api.options import ApiOptions
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.entrypoints.reconcile import reconcile
from paytabs_guard.resilience.clock import utc_now
from paytabs_guard.settings import load_settings
from paytabs_simulator.config import DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import RunningSimulator
from paytabs_simulator.signing import sign_body, sign_return

PROFILE_ID = 987654
SERVER_KEY = DEFAULT_SERVER_KEY
API_KEY = "merchant-key-0123456789"
ADMIN_KEY = "admin-key-0123456789abc"
VISA = "4111111111111111"
DECLINED = "4000000000000010"

FAST_OPTIONS = ApiOptions(
    idempotency_wait_seconds=5.0,
    sync_wait_seconds=3.0,
    paytabs_probe_cache_seconds=0.0,
    failed_verifications=5,
    failure_window_seconds=60.0,
    shutdown_grace_seconds=2.0,
)


def simulator_config(**changes: Any) -> SimulatorConfig:
    """Fast callback retries, so a 503 the service gives is retried within the test."""
    defaults: dict[str, Any] = {
        "callback_retry_delays": (0.05, 0.1, 0.2, 0.4, 0.8),
        "callback_timeout_seconds": 5.0,
    }
    return SimulatorConfig(**(defaults | changes))


class LateApp:
    """An ASGI app that forwards to one set after the server started."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("the service app is not plugged in yet")
        await self.app(scope, receive, send)


@dataclass
class Service:
    """A running service: its URL, container, simulator and authenticated clients."""

    url: str
    container: Container
    app: FastAPI
    sim: RunningSimulator
    api: httpx.AsyncClient
    admin: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    created: list[str] = field(default_factory=list)

    async def create(self, amount: str = "100.00", currency: str = "SAR", **extra: Any) -> Any:
        """A payment with its hosted page (asserts 201); returns the JSON."""
        body = {"amount": amount, "currency": currency, "description": "Order 1001", **extra}
        response = await self.api.post(
            "/payments/v2/create", json=body, headers={"Idempotency-Key": new_key()}
        )
        assert response.status_code == 201, response.text
        payment = response.json()
        self.created.append(payment["id"])
        return payment

    async def pay(self, payment: Mapping[str, Any], card: str = VISA, **extra: Any) -> Any:
        """Pay the hosted page at the simulator (no browser); returns its answer."""
        page_id = str(payment["redirect_url"]).rsplit("/", 1)[-1]
        async with httpx.AsyncClient(base_url=self.sim.base_url) as browser:
            response = await browser.post(
                f"/_sim/pages/{page_id}/pay", json={"card_number": card, **extra}
            )
        assert response.status_code == 200, response.text
        return response.json()

    async def follow_up(self, payment_id: str, kind: str, amount: str) -> httpx.Response:
        """A refund or capture of ``amount`` under a new Idempotency-Key; the answer as it came."""
        return await self.api.post(
            f"/payments/v2/{payment_id}/{kind}",
            json={"amount": amount},
            headers={"Idempotency-Key": new_key()},
        )

    async def sim_test_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the simulator's test API (faults, settling), asserted to succeed."""
        async with httpx.AsyncClient(base_url=self.sim.base_url) as client:
            response = await client.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response

    async def callbacks_done(self) -> None:
        """Every callback the simulator scheduled so far was delivered (or given up)."""
        await self.sim.engine.callbacks.wait_idle()

    async def get(self, payment_id: str) -> Any:
        response = await self.api.get(f"/payments/v2/{payment_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def outbox_events(self, payment_id: str, event_type: str | None = None) -> int:
        query = select(func.count()).select_from(outbox).where(outbox.c.payment_id == payment_id)
        if event_type is not None:
            query = query.where(outbox.c.type == event_type)
        async with self.container.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def simulated(self, cart_id: str) -> list[Any]:
        async with httpx.AsyncClient(base_url=self.sim.base_url) as client:
            response = await client.get("/_sim/transactions", params={"cart_id": cart_id})
        return list(response.json())

    async def inbox_keys(self) -> int:
        async with self.container.engine.connect() as connection:
            query = select(func.count()).select_from(webhook_inbox)
            return int((await connection.execute(query)).scalar_one())

    def metric(self, name: str, **labels: str) -> float:
        value = self.container.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


async def reconcile_now(service: Service, database_url: str) -> dict[str, object]:
    """``paytabs-guard reconcile --stuck-after 0``: the CLI's pass, with its own container."""
    settings = load_settings(base_env(service.sim.base_url, database_url))
    return await reconcile(settings, limit=50, stuck_after=timedelta(0))


async def start_up_reported() -> None:
    """The service's start-up report of deliveries left to sinks no longer configured has
    run (a task of the lifespan's, started with the relay): its reads are done, so they are
    in no count of statements that follows, and no shutdown cuts them."""
    for task in asyncio.all_tasks():
        if task.get_name() == "unconfigured-sinks":
            await task


def new_key() -> str:
    return f"key_{secrets.token_hex(12)}"


def base_env(sim_url: str, database_url: str) -> dict[str, str]:
    return {
        "PAYTABS_PROFILE_ID": str(PROFILE_ID),
        "PAYTABS_SERVER_KEY": SERVER_KEY,
        "PAYTABS_BASE_URL": sim_url,
        "PAYTABS_TIMEOUT": "5000",
        "PAYTABS_RETRY_ATTEMPTS": "1",
        "PAYTABS_RETRY_DELAY": "10",
        "PAYTABS_RETRY_MAX_DELAY": "20",
        "PAYTABS_OPERATION_DEADLINE": "8000",
        "CIRCUIT_BREAKER_TIMEOUT": "5000",
        "DATABASE_URL": database_url,
        "API_KEYS": API_KEY,
        "ADMIN_API_KEYS": ADMIN_KEY,
    }


@contextlib.asynccontextmanager
async def running_service(
    sim: RunningSimulator,
    database_url: str,
    *,
    env: Mapping[str, str] | None = None,
    options: ApiOptions = FAST_OPTIONS,
    host: str = "127.0.0.1",
    migrate: bool = True,
    redis_prefix: str = "paytabs-guard:",
    container_hook: Callable[[Container], Container] | None = None,
    clock: Callable[[], datetime] | None = None,
    reconcile: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Service]:
    late = LateApp()
    async with serve_app(late, host=host) as url:
        values = base_env(sim.base_url, database_url) | {"PUBLIC_BASE_URL": url} | dict(env or {})
        settings = load_settings(values)
        container = await build_container(
            settings,
            migrate=migrate,
            reconcile=reconcile,
            redis_prefix=redis_prefix,
            clock=clock or utc_now,
            monotonic=monotonic,
        )
        if container_hook is not None:
            container = container_hook(container)
        try:
            app = create_app(container, options)
            late.app = app
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20
                ) as api,
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=20
                ) as admin,
                httpx.AsyncClient(base_url=url, timeout=20) as anonymous,
            ):
                try:
                    yield Service(url, container, app, sim, api, admin, anonymous)
                finally:
                    # Callbacks the simulator still owes this service (follow-ups have them
                    # too) land before it stops: one cut by the shutdown would leave its
                    # database connection unclosed.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sim.engine.callbacks.wait_idle(), 10)
        finally:
            await container.aclose()


# ---- PayTabs callbacks, built and signed the way PayTabs does (independent signing code) ------


def transaction(
    payment: Mapping[str, Any],
    status: str = "A",
    *,
    tran_ref: str | None = None,
    tran_type: str = "Sale",
    amount: str | None = None,
    currency: str | None = None,
    profile_id: int = PROFILE_ID,
    previous_tran_ref: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A callback body for ``payment`` (its page's tran_ref unless given)."""
    body: dict[str, Any] = {
        "tran_ref": tran_ref or payment["tran_ref"],
        "merchant_id": 123456,
        "profile_id": profile_id,
        "cart_id": payment["cart_id"],
        "cart_description": payment["description"],
        "cart_currency": currency or payment["currency"],
        "cart_amount": amount or payment["amount"],
        "tran_currency": currency or payment["currency"],
        "tran_total": amount or payment["amount"],
        "tran_type": tran_type,
        "tran_class": "ECom",
        "payment_result": {
            "response_status": status,
            "response_code": "G12345" if status == "A" else "51",
            "response_message": "Authorised" if status == "A" else "Declined",
            "transaction_time": "2025-01-29T10:00:00Z",
        },
        "payment_info": {
            "payment_method": "Visa",
            "card_type": "Credit",
            "card_scheme": "Visa",
            "payment_description": "4111 11## #### 1111",
        },
        "ipn_trace": f"IPNS0001.{secrets.token_hex(4)}",
    }
    if previous_tran_ref:
        body["previous_tran_ref"] = previous_tran_ref
    body.update(extra)
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as PayTabs (and the simulator) send it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(raw: bytes, key: str = SERVER_KEY) -> dict[str, str]:
    return {"Content-Type": "application/json", "Signature": sign_body(raw, key)}


async def deliver(
    client: httpx.AsyncClient,
    body: Mapping[str, Any] | bytes,
    key: str = SERVER_KEY,
    **headers: str,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else encode(body)
    return await client.post(
        "/payments/v2/webhook", content=raw, headers=signed_headers(raw, key) | headers
    )


def signed_return(fields: Mapping[str, str], key: str = SERVER_KEY) -> dict[str, str]:
    return {**fields, "signature": sign_return(fields, key)}
