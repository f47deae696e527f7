"""Composition root: builds the application's parts from Settings. No globals, nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import httpx
import redis.asyncio as redis_asyncio
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.breaker_log import log_breaker_transitions
from paytabs_guard.adapters.events import (
    EventBus,
    OutboxRelay,
    RedisStreamSink,
    Sink,
    SinkSet,
)
from paytabs_guard.adapters.events.webhook_aliases import (
    position_aliases,
    url_sinks,
)
from paytabs_guard.adapters.paytabs.callbacks import PayTabsCallbacks
from paytabs_guard.adapters.paytabs.client import (
    DEFAULT_MAX_CONNECTIONS,
    Observer,
    PayTabsClient,
    http_timeout_within,
)
from paytabs_guard.adapters.paytabs.paytabs_gateway import PayTabsGateway
from paytabs_guard.adapters.paytabs.regions import base_url_for
from paytabs_guard.adapters.paytabs.resilient import (
    OperationBreakers,
    ResilientPayTabs,
    counts_against_gateway,
    went_unanswered,
)
from paytabs_guard.adapters.sql import (
    ConcurrentUpdate,
    SqlIdempotencyStore,
    SqlSignOuts,
    create_engine,
    sql_unit_of_work_factory,
    upgrade,
)
from paytabs_guard.adapters.sql.write_health import WriteHealth
from paytabs_guard.domain import Operation
from paytabs_guard.metrics import Metrics
from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerEvent,
    BreakerProber,
    BreakerRegistry,
    EventType,
    ProbeLease,
    SharedAttachable,
)
from paytabs_guard.resilience.clock import utc_now
from paytabs_guard.resilience.history import BreakerHistory
from paytabs_guard.resilience.prober import MAX_IN_FLIGHT
from paytabs_guard.resilience.retry import RetryConfig, RetryPolicy, Sleep
from paytabs_guard.resilience.shared import SharedBreakerState
from paytabs_guard.service import gateway_calls
from paytabs_guard.service.callbacks import CallbackReader
from paytabs_guard.service.page_expiry import PageExpiry, clock_sleep
from paytabs_guard.service.payments import PaymentDeps, PaymentService, ServiceUrls, key_lease
from paytabs_guard.service.ports import IdempotencyStore, SignOuts, UnitOfWorkFactory
from paytabs_guard.service.reconciliation import ReconciliationStatus
from paytabs_guard.settings import Settings


def build_paytabs_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> PayTabsClient:
    """The PayTabs client for the configured profile, region (or base-URL override) and timeout."""
    profile_id, server_key = settings.require_paytabs_credentials()
    return PayTabsClient(
        profile_id=profile_id,
        server_key=server_key,
        base_url=base_url_for(settings.paytabs_region, settings.paytabs_base_url),
        # Inside the breaker's call timeout, so "never sent" is said by the transport, not
        # lost to the breaker's cut as an unknown outcome.
        timeout_seconds=http_timeout_within(
            settings.circuit_breaker_timeout / 1000, settings.paytabs_timeout / 1000
        ),
        transport=transport,
        observer=observer,
        max_connections=max_connections,
    )


def breaker_config(settings: Settings) -> BreakerConfig:
    """The seed's CIRCUIT_BREAKER_* settings, with PayTabs' failure classification."""
    return BreakerConfig.from_milliseconds(
        timeout_ms=settings.circuit_breaker_timeout,
        error_threshold=settings.circuit_breaker_error_threshold,
        reset_timeout_ms=settings.circuit_breaker_reset_timeout,
        rolling_timeout_ms=settings.circuit_breaker_rolling_timeout,
        rolling_buckets=settings.circuit_breaker_rolling_buckets,
        volume_threshold=settings.circuit_breaker_volume_threshold,
        half_open_max_calls=settings.circuit_breaker_half_open_max_calls,
        is_failure=counts_against_gateway,
        is_unanswered=went_unanswered,
    ).with_recovery(
        min_open_time=settings.circuit_breaker_min_open_time / 1000,
        open_jitter=OPEN_JITTER,
        probe_interval=(settings.circuit_breaker_probe_interval or 0) / 1000 or None,
        consecutive_failures=settings.circuit_breaker_consecutive_failures or None,
        stall_after=(settings.circuit_breaker_stall_after or 0) / 1000 or None,
    )


#: Open periods and probe times are spread by +/- this share, so breakers and instances that
#: opened together never try again in lock step.
OPEN_JITTER = 0.2


def build_prober(
    parts: GatewayParts,
    settings: Settings,
    lease: ProbeLease | None,
    clock: Callable[[], float] = time.monotonic,
) -> BreakerProber:
    """Recovery probes for every breaker family: a query for a cart id that cannot exist.

    Any well-formed PayTabs answer ("not found" included) proves PayTabs answers; the query
    goes straight to the client (no retry, no breaker), and is never in the error-rate window.
    """
    client = parts.probe_client

    async def probe() -> object:
        return await client.query_cart(f"probe-{secrets.token_hex(8)}")

    # A probe is allowed what a real call is allowed. A shorter bound would call a gateway
    # that answers slowly (it is up: every real call would succeed) "down", and keep the
    # breaker open, turning away every sale, until the reset timeout. A probe that hangs
    # does not hold the next one back (the prober keeps a few in flight, and the oldest gives
    # way after prober.PROBE_PATIENCE when they are all taken).
    timeout = min(settings.paytabs_timeout, settings.circuit_breaker_timeout) / 1000
    return BreakerProber(
        parts.breakers,
        dict.fromkeys(parts.breakers.names(), probe),
        timeout=timeout,
        lease=lease,
        clock=clock,
    )


def retry_config(settings: Settings) -> RetryConfig:
    return RetryConfig(
        retries=settings.paytabs_retry_attempts,
        base_delay=settings.paytabs_retry_delay / 1000,
        max_delay=settings.paytabs_retry_max_delay / 1000,
        deadline=settings.paytabs_operation_deadline / 1000,
        budget_ratio=settings.paytabs_retry_budget_percent / 100,
    )


@dataclass(frozen=True, slots=True)
class GatewayParts:
    """Everything between the use cases and PayTabs; ``breakers`` feeds stats and health."""

    client: PayTabsClient
    breakers: BreakerRegistry
    retry: RetryPolicy
    paytabs: ResilientPayTabs
    gateway: PayTabsGateway
    #: The recovery probes' own client, with connections of its own (``build_gateway``).
    probe_client: PayTabsClient

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.probe_client.aclose()


def build_gateway(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: Observer | None = None,
    shared: SharedAttachable | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep | None = None,
    rng: random.Random | None = None,
) -> GatewayParts:
    """Client -> one breaker per operation family -> the one retry policy -> the Gateway."""
    client = build_paytabs_client(settings, transport=transport, observer=observer)
    breakers = BreakerRegistry(breaker_config(settings), clock=clock, shared=shared)
    retry = (
        RetryPolicy(retry_config(settings), clock=clock, rng=rng)
        if sleep is None
        else RetryPolicy(retry_config(settings), clock=clock, sleep=sleep, rng=rng)
    )
    families = OperationBreakers(
        create=breakers.get(Operation.CREATE),
        query=breakers.get(Operation.QUERY),
        follow_up=breakers.get(Operation.FOLLOW_UP),
        token=breakers.get(Operation.TOKEN),
    )
    paytabs = ResilientPayTabs(client, families, retry)
    # Follow-ups carry the callback URL too: PayTabs then reports each one as it does a page,
    # and a refund that lands after its hold was given up (later than any request should) is
    # still recorded, not lost; the callback of one already applied is a duplicate.
    callback_url = service_urls(settings.public_base_url).callback_url
    gateway = PayTabsGateway(paytabs, breakers, follow_up_callback_url=callback_url)
    # Probes never wait behind real calls for a connection: in an outage that hangs, those
    # hold every connection of the pool until their timeout, and a probe queued behind them
    # learnt of the recovery that much later (an audit: 14-21 s with the default timeouts).
    # As many connections as the prober keeps in flight, every breaker probing at once.
    connections = MAX_IN_FLIGHT * len(breakers.names())
    probe_client = build_paytabs_client(
        settings, transport=transport, observer=observer, max_connections=connections
    )
    return GatewayParts(client, breakers, retry, paytabs, gateway, probe_client)


# ---- the service's container --------------------------------------------------------------------

DEFAULT_REDIS_PREFIX = "paytabs-guard:"

#: Storage errors that mean "changed concurrently, nothing written: send it again" (HTTP 409).
STORAGE_CONFLICTS: tuple[type[Exception], ...] = (ConcurrentUpdate,)
#: Errors that mean "the database cannot be reached right now" (HTTP 503 with Retry-After):
#: the driver's operational errors, a pool timeout, a refused or reset connection, or a
#: connection that opens and never answers (asyncpg raises those unwrapped while connecting:
#: ConnectionError, and the builtin TimeoutError when its connect timeout runs out).
STORAGE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)
#: Why a command or the service cannot start on the database: the above, a host name that
#: does not resolve (``socket.gaierror``, an ``OSError``), or any error the database answers
#: with (``DBAPIError``: a wrong password, a database that does not exist), each said in a line.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    *STORAGE_UNAVAILABLE,
    OSError,
    sqlalchemy.exc.DBAPIError,
)


#: The routes PayTabs is sent to (entrypoints/api/callbacks.py serves both).
CALLBACK_PATH = "/payments/v2/webhook"
RETURN_PATH = "/payments/v2/return"


def key_lease_seconds(settings: Settings) -> float:
    """The in-flight lease of an Idempotency-Key (``payments.key_lease``), in seconds."""
    return key_lease(settings.longest_paytabs_write).total_seconds()


def service_urls(public_base_url: str) -> ServiceUrls:
    """The callback and return URLs under PUBLIC_BASE_URL, built once."""
    base = public_base_url.rstrip("/")
    return ServiceUrls(callback_url=base + CALLBACK_PATH, return_url=base + RETURN_PATH)


@dataclass(frozen=True, slots=True)
class Container:
    """Everything the service needs, built once from Settings by :func:`build_container`.

    ``shared_breakers`` and ``redis`` are None unless REDIS_URL is set (and, for the former,
    CIRCUIT_BREAKER_SHARED). Close it with :meth:`aclose`.
    """

    settings: Settings
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    idempotency: IdempotencyStore
    gateway: GatewayParts
    service: PaymentService
    """The use cases, as the routes call them (over ``payments``)."""
    payments: PaymentDeps
    """The use cases' ports, for the background work (reconciliation, page expiry)."""
    events: EventBus
    relay: OutboxRelay
    metrics: Metrics
    shared_breakers: SharedBreakerState | None
    redis: redis_asyncio.Redis | None
    reconciliation: ReconciliationStatus
    callbacks: CallbackReader
    sign_outs: SignOuts
    """Console sessions signed out before their cookie expires."""
    page_expiry: PageExpiry | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()
    # The breakers' recent state changes and probes, for the operator console's chart.
    breaker_history: BreakerHistory = field(default_factory=BreakerHistory)
    # How the latest commit ended, for readiness (adapters/sql/write_health.py).
    write_health: WriteHealth = field(default_factory=WriteHealth)

    def with_payments(self, payments: PaymentDeps) -> Container:
        """This container over other ports (tests swap a unit of work or a hook in)."""
        return replace(self, payments=payments, service=self.service.over(payments))

    async def aclose(self) -> None:
        """Stop shared state, close the PayTabs client, Redis and the database pool."""
        for close in self.closers:
            await close()


def _watch_breakers(breakers: BreakerRegistry, metrics: Metrics) -> None:
    for name, snapshot in breakers.snapshot().items():
        metrics.breaker_changed(name, None, snapshot.state)

    def on_event(event: BreakerEvent) -> None:
        if event.type in _STATE_CHANGES:
            previous = event.previous_state.value if event.previous_state else None
            metrics.breaker_changed(event.breaker, previous, event.state.value)
        elif event.type is EventType.PROBE:
            metrics.breaker_probe(event.breaker, event.reason or "unknown")

    breakers.subscribe(on_event)
    log_breaker_transitions(breakers)


_STATE_CHANGES = frozenset(
    {EventType.OPENED, EventType.HALF_OPENED, EventType.CLOSED, EventType.DISABLED}
)


async def build_container(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = utc_now,
    migrate: bool = True,
    redis_prefix: str = DEFAULT_REDIS_PREFIX,
    reconcile: bool = True,
    metrics: Metrics | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Container:
    """The service's parts: SQLite by default (PostgreSQL when DATABASE_URL says so), Redis
    pieces only when REDIS_URL is set. Runs the migrations first unless ``migrate`` is False.

    ``transport`` replaces the PayTabs HTTP transport (tests); ``reconcile`` False turns the
    reconciliation loop off (it runs every RECONCILE_INTERVAL_SECONDS otherwise), and with it
    the sleeper that expires unpaid pages at their deadlines. Events go to
    in-process subscribers, to EVENTS_REDIS_STREAM with Redis, and to EVENTS_WEBHOOK_URLS.
    ``monotonic`` is the breakers' and the prober's clock (tests inject a ManualClock).
    """
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        return await _build(
            settings,
            transport,
            clock,
            migrate,
            redis_prefix,
            reconcile,
            metrics,
            closers,
            monotonic,
        )
    except BaseException:
        for close in reversed(closers):
            await close()
        raise


async def _build(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    clock: Callable[[], datetime],
    migrate: bool,
    redis_prefix: str,
    reconcile: bool,
    metrics: Metrics | None,
    closers: list[Callable[[], Awaitable[None]]],
    monotonic: Callable[[], float],
) -> Container:
    profile_id, _ = settings.require_paytabs_credentials()
    metrics = metrics or Metrics(version=_version())
    if migrate:
        aliases = position_aliases(settings.events_webhook_urls)
        await upgrade(settings.database_url, webhook_aliases=aliases)
    engine = create_engine(settings.database_url)
    closers.append(engine.dispose)

    client: redis_asyncio.Redis | None = None
    shared: SharedBreakerState | None = None
    if settings.redis_url:
        client = redis_asyncio.Redis.from_url(
            settings.redis_url, socket_connect_timeout=1.0, socket_timeout=2.0
        )
        closers.insert(0, client.aclose)
        if settings.circuit_breaker_shared:
            shared = SharedBreakerState(settings.redis_url, prefix=redis_prefix)
            await shared.start()
            closers.insert(0, shared.aclose)

    def observe(operation: str, seconds: float, outcome: str) -> None:
        metrics.observe_gateway(operation, seconds, outcome)
        gateway_calls.record(operation, seconds, outcome)  # a payment's history, when asked

    parts = build_gateway(
        settings, transport=transport, observer=observe, shared=shared, clock=monotonic
    )
    closers.insert(0, parts.aclose)
    if shared is not None:
        # The breakers exist now: give the listener its first read of Redis (bounded), so an
        # instance starting while an operator has a breaker forced open starts forced open.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await shared.wait_synced()
    _watch_breakers(parts.breakers, metrics)
    history = BreakerHistory(started=clock())
    parts.breakers.subscribe(history.record)
    if settings.circuit_breaker_probe_interval:
        prober = build_prober(parts, settings, shared, monotonic)
        prober.start()
        closers.insert(0, prober.aclose)

    lease = key_lease_seconds(settings)
    health = WriteHealth()
    uow = sql_unit_of_work_factory(
        engine, clock=clock, key_lease_seconds=lease, write_health=health
    )
    expiry = PageExpiry(clock_sleep(clock)) if reconcile else None
    deps = PaymentDeps(
        uow=uow,
        gateway=parts.gateway,
        clock=clock,
        profile_id=profile_id,
        urls=service_urls(settings.public_base_url),
        page_ttl=timedelta(minutes=settings.paypage_ttl_minutes),
        send_window=settings.longest_paytabs_write,
        currency_conversion=settings.paytabs_currency_conversion,
    )
    if expiry is not None:
        deps = replace(deps, page_opened=expiry.arm)
    bus = EventBus()
    sinks: list[Sink | SinkSet] = [bus]
    if client is not None:
        sinks.append(RedisStreamSink(client, settings.events_redis_stream))
    if settings.events_webhook_urls:
        http = httpx.AsyncClient(follow_redirects=False)
        closers.insert(0, http.aclose)
        secrets = tuple(settings.events_webhook_secret)
        sinks.extend(url_sinks(settings.events_webhook_urls, secrets, http, clock=clock))
    relay = OutboxRelay(engine, sinks, clock=clock, max_attempts=settings.events_max_attempts)
    service = PaymentService(deps, wake=relay.notify, record=metrics.payment_result)
    return Container(
        settings=settings,
        engine=engine,
        uow=uow,
        idempotency=SqlIdempotencyStore(engine, in_flight_lease_seconds=lease),
        gateway=parts,
        service=service,
        payments=deps,
        events=bus,
        relay=relay,
        metrics=metrics,
        shared_breakers=shared,
        redis=client,
        reconciliation=ReconciliationStatus(
            timedelta(seconds=settings.reconcile_interval_seconds) if reconcile else None
        ),
        callbacks=PayTabsCallbacks(
            settings.webhook_secrets, timestamp_tolerance=settings.webhook_timestamp_tolerance
        ),
        sign_outs=SqlSignOuts(engine),
        page_expiry=expiry,
        redis_prefix=redis_prefix,
        closers=tuple(closers),
        breaker_history=history,
        write_health=health,
    )


def _version() -> str:
    try:
        return importlib.metadata.version("paytabs-guard")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


async def upgrade_database(settings: Settings) -> None:
    """Bring the configured database to the newest schema (``paytabs-guard db upgrade``)."""
    aliases = position_aliases(settings.events_webhook_urls)  # for migration 0013
    await upgrade(settings.database_url, webhook_aliases=aliases)
