"""``GET /payments/v2/stats``: counts, success rate, totals per currency and gateway health.

Computed with one aggregate query and the breakers' snapshots, then cached per window for
STATS_CACHE_SECONDS: in Redis when configured (every instance shares one answer), else in
the process. A Redis failure only costs the cache.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from paytabs_guard.bootstrap import Container
from paytabs_guard.domain import Money, PaymentState
from paytabs_guard.entrypoints import health_checks
from paytabs_guard.observability import get_logger

from .dependencies import ClientDep, RuntimeDep
from .runtime import Runtime
from .schemas import PROBLEM_RESPONSE
from .stats_schemas import CurrencyTotalsOut, GatewayStatsOut, OperationStatsOut, StatsOut
from .strict_query import STRICT_QUERY

Window = Literal["1h", "24h", "7d", "30d", "all"]
WINDOWS: Final[dict[str, timedelta | None]] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
MONEY_MOVED: Final = frozenset(
    {PaymentState.COMPLETED, PaymentState.PARTIALLY_REFUNDED, PaymentState.REFUNDED}
)

router = APIRouter(prefix="/payments/v2", tags=["operations"], dependencies=STRICT_QUERY)
log = get_logger(__name__)


def gateway_stats(container: Container) -> GatewayStatsOut:
    snapshots = container.gateway.breakers.snapshot()
    operations = {
        name: OperationStatsOut(
            state=s.state,
            calls=s.window.calls,
            error_rate=s.window.error_rate,
            latency_p50=s.window.latency_p50,
            latency_p95=s.window.latency_p95,
            latency_p99=s.window.latency_p99,
        )
        for name, s in snapshots.items()
    }
    calls = sum(s.window.calls for s in snapshots.values())
    failures = sum(s.window.failures for s in snapshots.values())

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    windows = [s.window for s in snapshots.values()]
    return GatewayStatsOut(
        window_seconds=max((w.seconds for w in windows), default=0.0),
        calls=calls,
        failures=failures,
        error_rate=round(100 * failures / calls, 2) if calls else 0.0,
        latency_p50=worst([w.latency_p50 for w in windows]),
        latency_p95=worst([w.latency_p95 for w in windows]),
        latency_p99=worst([w.latency_p99 for w in windows]),
        operations=operations,
    )


async def compute_stats(container: Container, window: str) -> StatsOut:
    now = container.payments.clock()
    span = WINDOWS[window]
    created_from: datetime | None = now - span if span is not None else None
    stats = await health_checks.payment_stats(container, created_from)
    counts = {state.value: stats.by_state.get(state.value, 0) for state in PaymentState}
    decided = sum(n for state, n in counts.items() if PaymentState(state).is_final)
    completed = sum(counts[state.value] for state in MONEY_MOVED)
    totals = {}
    for currency, sums in sorted(stats.by_currency.items()):
        totals[currency] = CurrencyTotalsOut(
            payments=sums.payments,
            amount=Money(sums.amount, currency).format(),
            captured=Money(sums.captured, currency).format(),
            refunded=Money(sums.refunded, currency).format(),
            net=Money(sums.captured - sums.refunded, currency).format(),
        )
    return StatsOut(
        window=window,
        created_from=created_from,
        generated_at=now,
        counts=counts,
        decided=decided,
        completed=completed,
        success_rate=round(completed / decided, 4) if decided else None,
        totals=totals,
        gateway=gateway_stats(container),
    )


async def _cached(runtime: Runtime, key: str) -> str | None:
    client = runtime.container.redis
    if client is None:
        return runtime.stats_cache.get(key)
    try:
        value = await client.get(runtime.container.redis_prefix + key)
    except Exception as error:  # the cache is an optimisation; Redis trouble must not fail it
        log.warning("stats cache unavailable", error=type(error).__name__)
        return runtime.stats_cache.get(key)
    return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None


async def _store(runtime: Runtime, key: str, text: str) -> None:
    runtime.stats_cache.put(key, text)
    client = runtime.container.redis
    if client is None:
        return
    seconds = runtime.container.settings.stats_cache_seconds
    if seconds <= 0:
        return
    millis = math.ceil(seconds * 1000)
    try:
        await client.set(runtime.container.redis_prefix + key, text, px=millis)
    except Exception as error:
        log.warning("stats cache unavailable", error=type(error).__name__)


@router.get(
    "/stats",
    response_model=StatsOut,
    summary="Payment statistics (cached briefly)",
    responses={401: PROBLEM_RESPONSE, 422: PROBLEM_RESPONSE},
)
async def stats(
    runtime: RuntimeDep,
    _client: ClientDep,
    window: Annotated[Window, Query(description="Payments created within this window")] = "24h",
) -> Response:
    key = f"stats:{window}"
    text = await _cached(runtime, key)
    hit = text is not None
    if text is None:
        text = (await compute_stats(runtime.container, window)).model_dump_json()
        await _store(runtime, key, text)
    return Response(
        text.encode(),
        media_type="application/json",
        headers={"X-Cache": "hit" if hit else "miss", "Cache-Control": "private, max-age=0"},
    )
