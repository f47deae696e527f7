"""Health endpoints (IETF draft-inadarei-api-health-check: ``application/health+json``) and
``/metrics``.

=============================  =========================================  =====================
endpoint                       checks                                     fail means
=============================  =========================================  =====================
``/livez``                     the process answers                        never fails
``/readyz``                    database; Redis (when configured) as a     503 (database only):
                               warning                                    take it out of the
                                                                          load balancer
``/payments/v2/health``        database, Redis, outbox lag, last          503 when the database
                               reconciliation                             fails; Redis and lag
                                                                          are warn
``/health/paytabs``            a cheap PayTabs query + breaker states     never: an outage is
                                                                          warn with 200
``/health/circuit-breakers``   every breaker's state and window           never: open is warn
=============================  =========================================  =====================

Readiness answers one question: can *this* instance take payments? PayTabs is deliberately not
in it: an outage would pull every instance out of the load balancer, and callbacks (and the
answers PayTabs still gives) would be lost with it. Redis is not either, for the same reason: it
is shared by every instance and the service runs without it (breakers fall back to local state,
events wait in the outbox, stats are cached in memory), so Redis trouble is a ``warn`` here and
``paytabs_guard_dependency_up{dependency="redis"} 0`` in the metrics. The database is: nothing
can be taken or recorded without it (see docs/operations.md, "Readiness").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from fastapi import APIRouter
from starlette.responses import Response

from paytabs_guard.bootstrap import Container
from paytabs_guard.entrypoints import health_checks
from paytabs_guard.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from paytabs_guard.observability import get_logger

from .dependencies import ContainerDep, RuntimeDep
from .runtime import Runtime

MEDIA_TYPE: Final = "application/health+json"
CHECK_TIMEOUT_SECONDS: Final = 2.0
Status = Literal["pass", "warn", "fail"]
_RANK: Final = {"pass": 0, "warn": 1, "fail": 2}
_QUIET_STATES: Final = frozenset({"closed", "disabled"})

router = APIRouter(tags=["health"])
log = get_logger(__name__)
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {MEDIA_TYPE: {}}, "description": "pass or warn"},
    503: {"content": {MEDIA_TYPE: {}}, "description": "fail"},
}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def component(
    component_id: str,
    component_type: str,
    status: Status,
    *,
    value: object = None,
    unit: str | None = None,
    output: str | None = None,
) -> dict[str, object]:
    """One entry of a ``checks`` array."""
    entry: dict[str, object] = {
        "componentId": component_id,
        "componentType": component_type,
        "status": status,
        "time": _now(),
    }
    if value is not None:
        entry["observedValue"] = value
    if unit is not None:
        entry["observedUnit"] = unit
    if output and status != "pass":
        entry["output"] = output
    elif output:
        entry["notes"] = [output]
    return entry


def worst(statuses: Iterable[str]) -> Status:
    result: Status = "pass"
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = "fail" if status == "fail" else "warn"
    return result


def health_response(
    checks: Mapping[str, list[dict[str, object]]], description: str, *, can_fail: bool = True
) -> Response:
    """The health document; HTTP 503 only for ``fail`` (and only where failing is allowed)."""
    status = worst(str(entry["status"]) for entries in checks.values() for entry in entries)
    if not can_fail and status == "fail":
        status = "warn"
    body = {"status": status, "description": description, "checks": dict(checks)}
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=503 if status == "fail" else 200,
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-store"},
    )


async def _timed(ping: Awaitable[float | None]) -> tuple[float | None, str | None]:
    """(seconds, None) or (None, why it failed): never raises, never hangs."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await ping, None
    except TimeoutError:
        return None, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as error:  # any driver error means "not reachable"
        return None, type(error).__name__


async def _write_refusal(container: Container) -> str | None:
    """Why the database refuses writes (None: it takes them, or no commit failed lately)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await health_checks.database_writes(container)
    except TimeoutError:
        return f"no write within {CHECK_TIMEOUT_SECONDS:g} s"


async def datastore_checks(container: Container) -> dict[str, list[dict[str, object]]]:
    """``database:responseTime`` (fail when unreachable) and, with Redis configured,
    ``redis:responseTime`` (warn when unreachable: the service runs without it)."""
    checks: dict[str, list[dict[str, object]]] = {}
    seconds, error = await _timed(health_checks.ping_database(container))
    # Reads alone do not take payments: a database that refuses writes fails too.
    refused = None if seconds is None else await _write_refusal(container)
    container.metrics.dependency("database", up=seconds is not None and refused is None)
    backend = container.engine.dialect.name
    checks["database:responseTime"] = [
        component(backend, "datastore", "fail", output=f"unreachable: {error}")
        if seconds is None
        else component(
            backend,
            "datastore",
            "fail",
            value=round(seconds * 1000, 2),
            unit="ms",
            output=f"refuses writes: {refused}",
        )
        if refused is not None
        else component(backend, "datastore", "pass", value=round(seconds * 1000, 2), unit="ms")
    ]
    if container.redis is not None:
        seconds, error = await _timed(health_checks.ping_redis(container))
        container.metrics.dependency("redis", up=seconds is not None)
        checks["redis:responseTime"] = [
            component(
                "redis",
                "datastore",
                "warn",
                output=f"unreachable: {error}; running without shared breaker state, the "
                "event stream waits in the outbox",
            )
            if seconds is None
            else component("redis", "datastore", "pass", value=round(seconds * 1000, 2), unit="ms")
        ]
    return checks


@router.get(
    "/livez",
    summary="Liveness: the process answers",
    responses=_HEALTH_RESPONSES,
    response_class=Response,
)
async def livez() -> Response:
    return health_response({"process:uptime": [component("process", "system", "pass")]}, "live")


@router.get(
    "/readyz",
    summary="Readiness: this instance can take payments (database reachable; Redis is a warning)",
    responses=_HEALTH_RESPONSES,
)
async def readyz(container: ContainerDep) -> Response:
    return health_response(await datastore_checks(container), "ready to serve")


async def _outbox_check(container: Container, runtime: Runtime) -> dict[str, object]:
    if not health_checks.has_event_sinks(container):
        return component(
            "outbox", "component", "pass", output="no event sinks: events stay in the outbox"
        )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            lag = await health_checks.outbox_lag(container)
    except Exception as error:
        return component("outbox", "component", "fail", output=type(error).__name__)
    age = lag.age_seconds(container.payments.clock())
    container.metrics.outbox(lag.unpublished + lag.pending_deliveries, age, lag.dead_letters)
    late = age > runtime.options.outbox_lag_warn_seconds
    output = None
    if late:
        output = f"oldest undelivered event is {age:.0f} s old"
    elif lag.dead_letters:
        output = f"{lag.dead_letters} dead letters need replaying"
    status: Status = "warn" if output else "pass"
    return component("outbox", "component", status, value=round(age, 3), unit="s", output=output)


def _reconciliation_check(container: Container, runtime: Runtime) -> dict[str, object]:
    status_ = container.reconciliation
    if status_.interval is None:
        return component("reconciliation", "component", "pass", output="disabled")
    interval = status_.interval.total_seconds()
    if status_.last_run_at is None:
        waited = time.monotonic() - runtime.started_at
        late = waited > 3 * interval
        return component(
            "reconciliation",
            "component",
            "warn" if late else "pass",
            output="no pass finished yet",
        )
    age = (container.payments.clock() - status_.last_run_at).total_seconds()
    late = age > 3 * interval
    return component(
        "reconciliation",
        "component",
        "warn" if late else "pass",
        value=status_.last_run_at.isoformat(),
        output=f"last pass {age:.0f} s ago" if late else None,
    )


@router.get(
    "/payments/v2/health",
    summary="Payment service health: datastores, outbox lag, reconciliation",
    responses=_HEALTH_RESPONSES,
    response_class=Response,
)
async def payments_health(runtime: RuntimeDep) -> Response:
    container = runtime.container
    checks = await datastore_checks(container)
    checks["outbox:lag"] = [await _outbox_check(container, runtime)]
    checks["reconciliation:lastRun"] = [_reconciliation_check(container, runtime)]
    return health_response(checks, "paytabs-guard payments")


def breaker_components(container: Container) -> list[dict[str, object]]:
    entries = []
    for name, snapshot in container.gateway.breakers.snapshot().items():
        quiet = snapshot.state in _QUIET_STATES
        entries.append(
            component(
                name,
                "component",
                "pass" if quiet else "warn",
                value=snapshot.state,
                output=None if quiet else f"breaker {name} is {snapshot.state}",
            )
        )
    return entries


@router.get(
    "/health/paytabs",
    summary="PayTabs reachability (warn, never fail) and breaker states",
    responses=_HEALTH_RESPONSES,
    response_class=Response,
)
async def paytabs_health(runtime: RuntimeDep) -> Response:
    container = runtime.container
    # One probe at a time, shared by every caller meanwhile: the endpoint needs no key, and
    # each probe is a PayTabs query made with the merchant's server key.
    probe = await runtime.probe_cache.shared(
        "paytabs", lambda: health_checks.probe_paytabs(container)
    )
    checks = {
        "paytabs:responseTime": [
            component(
                "paytabs",
                "component",
                "pass" if probe.ok else "warn",
                value=round(probe.seconds * 1000, 2),
                unit="ms",
                output=None if probe.ok else f"PayTabs did not answer: {probe.reason}",
            )
        ],
        "circuitBreaker:state": breaker_components(container),
    }
    return health_response(checks, "PayTabs gateway", can_fail=False)


@router.get(
    "/health/circuit-breakers",
    summary="Circuit breaker states (open is warn, never fail)",
    responses=_HEALTH_RESPONSES,
    response_class=Response,
)
async def breakers_health(container: ContainerDep) -> Response:
    return health_response(
        {"circuitBreaker:state": breaker_components(container)}, "circuit breakers", can_fail=False
    )


async def _database_readings(container: Container) -> None:
    """The database's gauges for a scrape: the outbox (with event sinks) and the undecided
    payments, read side by side under one timeout, so a hanging database costs a scrape
    ``CHECK_TIMEOUT_SECONDS``, not that twice. They also say whether the database answers:
    its up gauge is otherwise set only when someone asks a health endpoint, and a scrape
    would show the last reading, up, while the database is gone. A reading that fails leaves
    its gauges as they were (metrics render whatever the database does)."""

    async def outbox() -> None:
        lag = await health_checks.outbox_lag(container)
        container.metrics.outbox(
            lag.unpublished + lag.pending_deliveries,
            lag.age_seconds(container.payments.clock()),
            lag.dead_letters,
        )

    async def undecided() -> None:
        found = await health_checks.undecided_payments(container)
        container.metrics.undecided_payments(
            found.count, found.age_seconds(container.payments.clock())
        )

    readings = {"undecided payments": asyncio.ensure_future(undecided())}
    if health_checks.has_event_sinks(container):
        readings["outbox lag"] = asyncio.ensure_future(outbox())
    _, late = await asyncio.wait(readings.values(), timeout=CHECK_TIMEOUT_SECONDS)
    for task in late:
        task.cancel()
    failed = 0
    for name, task in readings.items():
        if task in late or task.exception() is not None:
            failed += 1
            why = "timeout" if task in late else type(task.exception()).__name__
            log.warning(f"{name} unavailable for metrics", error=why)
    # Reads that work on a database refusing writes are not "up" either (readiness's probe
    # clears the failure once writes work again; a scrape does not write).
    writable = container.write_health.failure is None
    container.metrics.dependency("database", up=failed < len(readings) and writable)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(container: ContainerDep) -> Response:
    if container.redis is not None:  # so Redis trouble shows without anyone asking /health
        seconds, _ = await _timed(health_checks.ping_redis(container))
        container.metrics.dependency("redis", up=seconds is not None)
    await _database_readings(container)
    # A breaker has no timer task: its open period ends when someone looks. Look, so that the
    # state gauge says half_open once it is (with probes off nothing else may look for hours).
    container.gateway.breakers.snapshot()
    return Response(container.metrics.render(), media_type=METRICS_CONTENT_TYPE)
