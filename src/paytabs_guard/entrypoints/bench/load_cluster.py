"""Several service instances on loopback sharing one database and one Redis: the scale-out
deployment in one process, for tests, chaos scenarios and benchmarks.

Each instance is a real uvicorn server on its own port with its own container (its own engine,
pool, Redis clients, breakers and relay), so instances share only what production instances
share: the database, Redis and the gateway. Callbacks cross over: instance *i* gives PayTabs the
URL of instance *i + 1* as its PUBLIC_BASE_URL, so every callback for a payment lands on another
instance than the one that created it, as behind a load balancer.

```python
async with run_cluster(sim.base_url, database_url, redis_url=url, redis_prefix=prefix) as cluster:
    a, b = cluster.instances
    payment = await a.create()          # its callback will reach b
```

Every instance records its breakers' state changes with wall-clock timestamps
(``instance.breaker_changes``), which is how "both breakers opened within a second" is checked.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from paytabs_guard.bootstrap import Container, build_container
from paytabs_guard.entrypoints.api.app import create_app
from paytabs_guard.entrypoints.api.options import ApiOptions
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.resilience import BreakerEvent, EventType
from paytabs_guard.settings import load_settings

PROFILE_ID: Final = 987654
#: The simulator's documented test key (``paytabs_simulator.config.DEFAULT_SERVER_KEY``).
SERVER_KEY: Final = "SGJNZ96JLG-JDMKHGRWT9-RWRK2KJNRJ"
API_KEY: Final = "cluster-merchant-key-0123456789"
ADMIN_KEY: Final = "cluster-admin-key-0123456789abc"
_STATE_CHANGES: Final = frozenset(
    {EventType.OPENED, EventType.HALF_OPENED, EventType.CLOSED, EventType.DISABLED}
)

CLUSTER_OPTIONS: Final = ApiOptions(
    idempotency_wait_seconds=5.0,
    sync_wait_seconds=3.0,
    paytabs_probe_cache_seconds=0.0,
    shutdown_grace_seconds=2.0,
)


def cluster_env(
    simulator_url: str, database_url: str, redis_url: str | None, redis_prefix: str
) -> dict[str, str]:
    """Settings every instance shares: the simulator's test profile, short PayTabs timeouts and
    retries (outages show within a test's time), one database, one Redis, shared breakers."""
    return {
        "PAYTABS_PROFILE_ID": str(PROFILE_ID),
        "PAYTABS_SERVER_KEY": SERVER_KEY,
        "PAYTABS_BASE_URL": simulator_url,
        "PAYTABS_TIMEOUT": "5000",
        "PAYTABS_RETRY_ATTEMPTS": "1",
        "PAYTABS_RETRY_DELAY": "10",
        "PAYTABS_RETRY_MAX_DELAY": "20",
        "PAYTABS_OPERATION_DEADLINE": "8000",
        "CIRCUIT_BREAKER_TIMEOUT": "5000",
        "CIRCUIT_BREAKER_SHARED": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url or "",
        "EVENTS_REDIS_STREAM": f"{redis_prefix}events",
        "API_KEYS": API_KEY,
        "ADMIN_API_KEYS": ADMIN_KEY,
    }


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A breaker of one instance changed state, and when (wall clock)."""

    instance: str
    breaker: str
    state: str
    reason: str | None
    timestamp: datetime


class _LateApp:
    """Forwards to an app set once the server is listening (its URL is needed to build it)."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("the instance is not ready yet")
        await self.app(scope, receive, send)


@dataclass
class Instance:
    """One running service instance."""

    name: str
    url: str
    container: Container
    app: FastAPI
    api: httpx.AsyncClient
    breaker_changes: list[BreakerChange] = field(default_factory=list)

    async def create(
        self, amount: str = "100.00", currency: str = "SAR", **extra: Any
    ) -> httpx.Response:
        """``POST /payments/v2/create`` with a fresh Idempotency-Key."""
        body = {"amount": amount, "currency": currency, "description": "Order", **extra}
        key = f"cluster-{self.name}-{secrets.token_hex(8)}"
        return await self.api.post(
            "/payments/v2/create", json=body, headers={"Idempotency-Key": key}
        )

    def opened_at(self, breaker: str) -> BreakerChange | None:
        """The first time ``breaker`` opened on this instance."""
        for change in self.breaker_changes:
            if change.breaker == breaker and change.state == "open":
                return change
        return None


@dataclass(frozen=True)
class Cluster:
    instances: tuple[Instance, ...]
    redis_prefix: str

    def receiver_of(self, creator: Instance) -> Instance:
        """The instance that receives the callbacks of payments ``creator`` made."""
        index = self.instances.index(creator)
        return self.instances[(index + 1) % len(self.instances)]


@contextlib.asynccontextmanager
async def run_cluster(
    simulator_url: str,
    database_url: str,
    *,
    redis_url: str | None,
    redis_prefix: str,
    size: int = 2,
    env: Mapping[str, str] | None = None,
    options: ApiOptions = CLUSTER_OPTIONS,
    reconcile: bool = False,
) -> AsyncIterator[Cluster]:
    """``size`` instances over real loopback HTTP, each running its relay (and reconciliation
    when ``reconcile``); callbacks of instance *i* go to instance *i + 1*."""
    if size < 1:
        raise ValueError("a cluster has at least one instance")
    async with contextlib.AsyncExitStack() as stack:
        fronts = [_LateApp() for _ in range(size)]
        urls = [await stack.enter_async_context(serve_app(front)) for front in fronts]
        shared = cluster_env(simulator_url, database_url, redis_url, redis_prefix)
        instances = []
        for index, (front, url) in enumerate(zip(fronts, urls, strict=True)):
            name = f"instance-{index + 1}"
            values = shared | {"PUBLIC_BASE_URL": urls[(index + 1) % size]} | dict(env or {})
            container = await build_container(
                load_settings(values),
                migrate=index == 0,  # one upgrader; the others find the schema ready
                redis_prefix=redis_prefix,
                reconcile=reconcile,
            )
            stack.push_async_callback(container.aclose)
            app = create_app(container, options)
            await stack.enter_async_context(app.router.lifespan_context(app))
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20
                )
            )
            instance = Instance(name, url, container, app, api)
            _record_breakers(instance)
            front.app = app
            instances.append(instance)
        yield Cluster(tuple(instances), redis_prefix)


def _record_breakers(instance: Instance) -> None:
    def on_event(event: BreakerEvent) -> None:
        if event.type in _STATE_CHANGES:
            instance.breaker_changes.append(
                BreakerChange(
                    instance.name, event.breaker, event.state.value, event.reason, event.timestamp
                )
            )

    instance.container.gateway.breakers.subscribe(on_event)
