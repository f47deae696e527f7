"""What the operators' endpoints answer: payment statistics and the breakers' state (the
merchant API's bodies are in ``schemas.py``, the events API's in ``event_schemas.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class CurrencyTotalsOut(BaseModel):
    payments: int
    amount: str
    captured: str
    refunded: str
    net: str = Field(description="captured - refunded")


class OperationStatsOut(BaseModel):
    """One PayTabs operation family, from its breaker's rolling window."""

    state: str
    calls: int
    error_rate: float = Field(description="Percent of completed calls that failed")
    latency_p50: float | None = Field(description="Seconds")
    latency_p95: float | None
    latency_p99: float | None


class GatewayStatsOut(BaseModel):
    """PayTabs calls over the breakers' rolling windows (``window_seconds`` long, not the
    stats window); latencies are the worst of the operation families."""

    window_seconds: float
    calls: int
    failures: int
    error_rate: float = Field(description="Percent of completed calls that failed")
    latency_p50: float | None = Field(description="Seconds")
    latency_p95: float | None
    latency_p99: float | None
    operations: dict[str, OperationStatsOut]


class StatsOut(BaseModel):
    window: str
    created_from: datetime | None
    generated_at: datetime
    counts: dict[str, int]
    decided: int
    completed: int
    success_rate: float | None = Field(description="completed / decided; null when none decided")
    totals: dict[str, CurrencyTotalsOut]
    gateway: GatewayStatsOut


class BreakerStatsOut(BaseModel):
    breakers: dict[str, dict[str, Any]]  # BreakerSnapshot.as_dict(): nested JSON


class BreakerControlOut(BreakerStatsOut):
    """The breaker after the command, and where the command took effect."""

    applies_to: Literal["this_process", "every_instance"] = Field(
        description="`every_instance`: stored in Redis and published, so every instance and "
        "worker sharing this Redis applies it within about a second (and at start-up: it "
        "survives restarts). `this_process`: only the worker process that answered changed; "
        "the others (other workers of `serve --workers N`, other instances) did not, and a "
        "restart forgets it. `note` says why."
    )
    note: str = Field(description="Where the command took effect and why, in words")
