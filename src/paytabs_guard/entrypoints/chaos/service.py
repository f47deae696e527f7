"""One instance of the real service for one benchmark run, with the benchmark's recorders.

The app is ``create_app`` around a container from ``build_container``, served by uvicorn on a
loopback port (``loopback.serve_app``) whose address is known before the container is built, so
PUBLIC_BASE_URL (where the simulator sends its callbacks) is the real one. The outbox relay runs
in the app's lifespan, as in production; an in-process subscriber counts ``payment.completed``
events, and a breaker subscriber records every state change.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paytabs_guard.adapters.events import CloudEvent
from paytabs_guard.adapters.events.tables import PENDING, event_deliveries, has_status
from paytabs_guard.adapters.sql.tables import outbox, payment_cart_ids, payments
from paytabs_guard.bootstrap import Container, build_container
from paytabs_guard.entrypoints.api.app import create_app
from paytabs_guard.entrypoints.api.options import ApiOptions
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_guard.resilience import BreakerEvent, EventType
from paytabs_guard.settings import load_settings

from .driver import COMPLETED_STATES
from .scenarios import FAMILIES

SUBSCRIBER: Final = "bench.payment-completed"
API_KEY: Final = f"chaos_{secrets.token_hex(16)}"
OPTIONS: Final = ApiOptions(shutdown_grace_seconds=5.0)

_STATE_CHANGES: Final = frozenset(
    {EventType.OPENED, EventType.HALF_OPENED, EventType.CLOSED, EventType.DISABLED}
)


@dataclass(frozen=True, slots=True)
class BreakerChange:
    at: float
    """Monotonic seconds (the breaker's clock)."""
    breaker: str
    state: str
    previous: str | None
    reason: str | None
    instance: int = 0


@dataclass(frozen=True, slots=True)
class BreakerProbe:
    """A recovery probe a breaker sent while open, and what it found."""

    at: float
    breaker: str
    result: str
    """``succeeded`` or ``failed`` (the event's reason)."""
    instance: int = 0


@dataclass(frozen=True, slots=True)
class ServedCreate:
    """One ``POST /payments/v2/create`` as the service saw it: from the request reaching the app
    to the last byte of the answer handed to the server. The merchants' own clock adds their
    HTTP client and, since they share this process's event loop, the queue in front of it."""

    start: float
    """Monotonic seconds (the breaker's clock)."""
    seconds: float
    status: int
    instance: int = 0


def _is_probe(event: BreakerEvent) -> bool:
    # Probe events arrive with the breaker's recovery probes; until then there are none.
    return str(getattr(event.type, "value", event.type)).rsplit(".", 1)[-1] == "probe"


@dataclass
class Recorders:
    """What the service tells the benchmark while it runs."""

    on_payment_completed: Callable[[str], None] = field(default=lambda _payment_id: None)
    """Tells the merchants (set by the run to its merchants' ``completed``)."""
    completed_events: Counter[str] = field(default_factory=Counter)
    """Deliveries of ``payment.completed`` per payment id (at least once: may exceed 1)."""
    event_ids: set[str] = field(default_factory=set)
    breaker_changes: list[BreakerChange] = field(default_factory=list)
    probes: list[BreakerProbe] = field(default_factory=list)
    served_creates: list[ServedCreate] = field(default_factory=list)
    breaker_stats: list[dict[str, Any]] = field(default_factory=list)
    """Per instance, the breaker stats endpoint's answer at the end of the run."""

    async def on_completed(self, event: CloudEvent) -> None:
        payment_id = str(event.data.get("payment_id") or event.subject)
        self.completed_events[payment_id] += 1
        self.event_ids.add(event.id)
        self.on_payment_completed(payment_id)

    def on_breaker(self, event: BreakerEvent) -> None:
        self.breaker_listener(0)(event)

    def breaker_listener(self, instance: int) -> Callable[[BreakerEvent], None]:
        """A breaker subscriber that records state changes and probes of ``instance``."""

        def listen(event: BreakerEvent) -> None:
            if event.type in _STATE_CHANGES:
                previous = event.previous_state.value if event.previous_state else None
                self.breaker_changes.append(
                    BreakerChange(
                        event.at, event.breaker, event.state.value, previous, event.reason, instance
                    )
                )
            elif _is_probe(event):
                self.probes.append(
                    BreakerProbe(event.at, event.breaker, str(event.reason or "unknown"), instance)
                )

        return listen


class _LateApp:
    """Forwards to an app plugged in after the server has started (its URL is needed first),
    and times the creates it serves."""

    def __init__(self, served: list[ServedCreate], instance: int) -> None:
        self.app: ASGIApp | None = None
        self._served = served
        self._instance = instance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError("the service is not ready yet")
        if not _is_create(scope):
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 0

        async def timed_send(message: Message) -> None:
            nonlocal status
            await send(message)
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                seconds = time.monotonic() - start
                self._served.append(ServedCreate(start, seconds, status, self._instance))

        await self.app(scope, receive, timed_send)


def _is_create(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope.get("method") == "POST"
        and scope.get("path") == "/payments/v2/create"
    )


@dataclass(frozen=True, slots=True)
class RunningService:
    urls: tuple[str, ...]
    """One per instance; merchants spread their orders over them."""
    containers: tuple[Container, ...]
    recorders: Recorders

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def container(self) -> Container:
        return self.containers[0]

    async def record_breaker_stats(self) -> None:
        """Ask every instance's breaker stats endpoint (what an operator sees) once."""
        for url in self.urls:
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10.0
            ) as http:
                try:
                    response = await http.get("/payments/v2/circuit-breaker/stats")
                except httpx.HTTPError as error:
                    self.recorders.breaker_stats.append({"error": type(error).__name__})
                    continue
            if response.status_code == 200:
                self.recorders.breaker_stats.append(dict(response.json()))
            else:
                self.recorders.breaker_stats.append({"error": f"HTTP {response.status_code}"})


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """What the service's database says at the end of a run."""

    states: dict[str, int]
    completed_ids: frozenset[str]
    cart_to_payment: dict[str, str]
    undelivered: int
    """Events for the benchmark's subscriber not delivered yet (pending or in the outbox)."""


@contextlib.asynccontextmanager
async def running_service(
    env: Mapping[str, str],
    *,
    breaker: bool,
    recorders: Recorders,
    instances: int = 1,
    redis_prefix: str | None = None,
) -> AsyncIterator[RunningService]:
    """The service with ``env`` (plus PUBLIC_BASE_URL and an API key); breakers disabled on
    every family unless ``breaker``. With ``instances`` > 1, that many instances share the
    database of ``env`` (and, with REDIS_URL in ``env``, breaker state under ``redis_prefix``);
    each gives PayTabs its own URL for callbacks."""
    # Two stacks so that the servers stop (and drain their requests) before the containers
    # close: a container closed first leaves requests in flight on a closed PayTabs client.
    async with contextlib.AsyncExitStack() as closers, contextlib.AsyncExitStack() as stack:
        fronts = [_LateApp(recorders.served_creates, index) for index in range(instances)]
        urls = [
            await stack.enter_async_context(serve_app(front, graceful_shutdown_seconds=5))
            for front in fronts
        ]
        containers = []
        for index, (front, url) in enumerate(zip(fronts, urls, strict=True)):
            settings = load_settings({**env, "PUBLIC_BASE_URL": url, "API_KEYS": API_KEY})
            extra: dict[str, Any] = {} if redis_prefix is None else {"redis_prefix": redis_prefix}
            container = await build_container(
                settings, reconcile=False, migrate=index == 0, **extra
            )
            closers.push_async_callback(container.aclose)
            breakers = container.gateway.breakers
            if not breaker:
                for family in FAMILIES:
                    breakers.get(family).disable()
            breakers.subscribe(recorders.breaker_listener(index))
            container.events.on("payment.completed", recorders.on_completed, name=SUBSCRIBER)
            app = create_app(container, OPTIONS)
            front.app = app
            await stack.enter_async_context(app.router.lifespan_context(app))
            containers.append(container)
        yield RunningService(tuple(urls), tuple(containers), recorders)


async def stored_outcome(container: Container) -> StoredOutcome:
    async with container.engine.connect() as connection:
        rows = await connection.execute(
            select(payments.c.state, func.count()).group_by(payments.c.state)
        )
        states = {str(state): int(count) for state, count in rows.all()}
        rows = await connection.execute(
            select(payments.c.id).where(payments.c.state.in_(sorted(COMPLETED_STATES)))
        )
        completed = frozenset(str(row[0]) for row in rows.all())
        rows = await connection.execute(
            select(payment_cart_ids.c.cart_id, payment_cart_ids.c.payment_id)
        )
        carts = {str(cart): str(payment) for cart, payment in rows.all()}
        rows = await connection.execute(select(payments.c.cart_id, payments.c.id))
        for cart, payment in rows.all():
            carts.setdefault(str(cart), str(payment))
        unpublished = await connection.execute(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.published_at.is_(None), outbox.c.type == "payment.completed")
        )
        pending = await connection.execute(
            select(func.count())
            .select_from(event_deliveries)
            .where(
                event_deliveries.c.sink == f"subscriber:{SUBSCRIBER}",
                has_status(event_deliveries.c.status, PENDING),
            )
        )
        undelivered = int(unpublished.scalar_one()) + int(pending.scalar_one())
    return StoredOutcome(states, completed, carts, undelivered)
