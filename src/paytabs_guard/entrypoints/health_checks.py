"""What the health, stats and metrics endpoints ask of a running service, read from the
container's parts (the container itself only wires them)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import overload

from paytabs_guard.adapters import reporting
from paytabs_guard.adapters.events import WebhookSink
from paytabs_guard.adapters.events.store import SqlEventStore
from paytabs_guard.adapters.paytabs.errors import PayTabsError
from paytabs_guard.adapters.sql import write_health
from paytabs_guard.bootstrap import Container
from paytabs_guard.domain import Operation
from paytabs_guard.resilience import CircuitOpenError
from paytabs_guard.service.events import EventStore
from paytabs_guard.service.reconciliation import RECONCILABLE

PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One cheap question to PayTabs: did it answer, how fast, and if not, why."""

    ok: bool
    seconds: float
    reason: str | None = None


async def ping_database(container: Container) -> float:
    """Seconds ``SELECT 1`` took; raises when the database cannot be reached."""
    return await reporting.ping_database(container.engine)


async def database_writes(container: Container) -> str | None:
    """Why the database refuses writes, or None. Asks it (a write probe) while the latest commit
    failed with a storage error, and always on PostgreSQL, where the probe is one read (an
    instance started on a read-only server must not report ready until a merchant's write
    fails); a probe that writes through clears the failure."""
    health = container.write_health
    if health.failure is None and container.engine.dialect.name != "postgresql":
        return None
    try:
        await write_health.probe_writes(container.engine)
    except Exception as error:
        health.failed(error)  # logged only when it starts a failure
        return health.failure
    health.succeeded()
    return None


async def ping_redis(container: Container) -> float | None:
    """Seconds a PING took; None without Redis; raises when Redis cannot be reached."""
    return None if container.redis is None else await reporting.ping_redis(container.redis)


async def outbox_lag(container: Container) -> reporting.OutboxLag:
    """The lag of the sinks configured now: deliveries left to a sink no longer configured
    (a webhook URL removed) wait for an operator, not for the relay (docs/events.md)."""
    return await reporting.outbox_lag(container.engine, configured_sinks(container))


async def undecided_payments(container: Container) -> reporting.UndecidedPayments:
    """Payments reconciliation would still settle (the same states), for the age gauge."""
    return await reporting.undecided_payments(
        container.engine, [state.value for state in RECONCILABLE]
    )


def event_store(container: Container) -> EventStore:
    """Events and their deliveries, for the events API (stateless: cheap to build)."""
    return SqlEventStore(container.engine, clock=container.payments.clock)


def configured_sinks(container: Container) -> list[str]:
    """The names of the sinks the relay has now (subscribers registered so far included)."""
    return [sink.name for sink in container.relay.sinks()]


@overload
def by_position(container: Container, sink: str) -> str: ...
@overload
def by_position(container: Container, sink: None) -> None: ...
def by_position(container: Container, sink: str | None) -> str | None:
    """A sink as a client names it: ``webhook:N`` (N from 1 to the number of URLs) is the
    N-th URL of EVENTS_WEBHOOK_URLS, as the docs have always said, whose sink is named by its
    URL (``webhook:<12 hex digits>``); any other name is itself."""
    prefix, _, position = (sink or "").partition(":")
    if sink is None or prefix != "webhook" or not (position.isascii() and position.isdigit()):
        return sink
    webhooks = [found.name for found in container.relay.sinks() if isinstance(found, WebhookSink)]
    n = int(position[:6])
    return webhooks[n - 1] if 1 <= n <= len(webhooks) and len(position) <= 6 else sink


def has_event_sinks(container: Container) -> bool:
    """Whether anything consumes events (with none, the outbox is not drained)."""
    return bool(container.relay.sinks())


async def payment_stats(
    container: Container, created_from: datetime | None
) -> reporting.PaymentStats:
    return await reporting.payment_stats(container.engine, created_from=created_from)


async def probe_paytabs(container: Container) -> ProbeResult:
    """Ask PayTabs for a cart that cannot exist, through the query breaker, one attempt.

    An open breaker answers at once (no traffic to a gateway that is down); the probe counts
    in the breaker's window like any query.
    """
    client = container.gateway.client
    cart_id = f"health-{secrets.token_hex(8)}"
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            breaker = container.gateway.breakers.get(Operation.QUERY)
            await breaker.call(lambda: client.query_cart(cart_id))
    except CircuitOpenError:
        return ProbeResult(False, time.perf_counter() - started, "circuit open")
    except TimeoutError:
        return ProbeResult(False, time.perf_counter() - started, "timeout")
    except PayTabsError as error:
        return ProbeResult(False, time.perf_counter() - started, type(error).__name__)
    return ProbeResult(True, time.perf_counter() - started)
