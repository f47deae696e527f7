"""Fault settings, and the per-request decision of which fault (if any) to inject.

Faults are set at start through ``SimulatorConfig.faults`` and replaced at run time through
``PUT /_sim/faults``. The model is frozen: a change swaps the whole object, so a request that is
already in flight keeps the settings it started with.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Phase = Literal["before", "after", "mixed"]
OutageMode = Literal["status", "reset", "hang"]
FaultAction = Literal["error", "reset", "hang"]
Operation = Literal["create", "query", "follow_up", "token"]
"""PayTabs operation families, as a client groups them: create a payment page, query
transactions, follow-ups (refund, capture, void, release) and tokens (recurring charges, token
query and delete). An outage can be limited to some of them: a partial outage."""

REQUEST_PATH: Final = "/payment/request"
FOLLOW_UP_TYPES: Final = frozenset({"refund", "capture", "void", "release"})

DEFAULT_FAULT_PATHS = [
    "/payment/request",
    "/payment/query",
    "/payment/token",
    "/payment/token/delete",
]
# The test/admin API and the hosted page must stay reachable while the "gateway" misbehaves,
# otherwise a test could not switch a fault off again.
UNFAULTABLE_PREFIXES = ("/_sim", "/payment/page")

Rate = Field(default=0.0, ge=0.0, le=1.0)
NonNegative = Field(default=0.0, ge=0.0)


class Outage(BaseModel):
    """A window, in seconds since the simulator started (by its clock), when the gateway is down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(ge=0.0)
    end: float
    mode: OutageMode = "status"
    status: int = Field(default=503, ge=400, le=599)
    operations: list[Operation] | None = Field(default=None, min_length=1)
    """The operations that are down; None (the default) means all of them."""

    @model_validator(mode="after")
    def _end_after_start(self) -> Outage:
        if self.end <= self.start:
            raise ValueError("end must be greater than start")
        return self

    def covers(self, elapsed_seconds: float, operation: Operation | None) -> bool:
        """True when this outage takes ``operation`` down at ``elapsed_seconds``."""
        if not self.start <= elapsed_seconds < self.end:
            return False
        return self.operations is None or operation in self.operations


class Faults(BaseModel):
    """Everything the simulator can do wrong on purpose; all off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Rate
    error_statuses: list[int] = Field(default_factory=lambda: [500, 502, 503, 504], min_length=1)
    error_phase: Phase = "before"

    latency_ms: float = NonNegative
    latency_jitter_ms: float = NonNegative
    latency_spike_rate: float = Rate
    latency_spike_ms: float = NonNegative

    hang_rate: float = Rate
    hang_phase: Phase = "before"
    hang_max_seconds: float = Field(default=300.0, gt=0.0)

    reset_rate: float = Rate
    reset_phase: Phase = "before"

    outages: list[Outage] = Field(default_factory=list)
    down: bool = False
    down_mode: OutageMode = "status"
    down_status: int = Field(default=503, ge=400, le=599)

    fault_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_FAULT_PATHS))

    callback_duplicate_rate: float = Rate
    callback_out_of_order: float = Rate
    callback_withhold_rate: float = Rate
    callback_delay_ms: float = NonNegative

    refund_pending: bool = False
    capture_pending: bool = False

    @property
    def partial_outages(self) -> bool:
        """True when an outage is limited to some operations, so a request's operation (for
        ``/payment/request``, read from its body) decides whether the outage hits it."""
        return any(outage.operations is not None for outage in self.outages)

    @field_validator("error_statuses")
    @classmethod
    def _statuses_are_errors(cls, statuses: list[int]) -> list[int]:
        for status in statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP error status (400-599)")
        return statuses

    @field_validator("fault_paths")
    @classmethod
    def _paths_are_gateway_paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must start with '/'")
            if path.startswith(UNFAULTABLE_PREFIXES):
                raise ValueError(f"{path!r}: the test API and the hosted page are never faulted")
        return paths

    @field_validator("callback_out_of_order", mode="before")
    @classmethod
    def _flag_means_always(cls, value: object) -> object:
        # Accept `true`/`false` as well as a rate: "send stale callbacks" reads naturally as a flag.
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        return value


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request: wait, then maybe fail it before or after it is processed."""

    latency_seconds: float = 0.0
    action: FaultAction | None = None
    phase: Literal["before", "after"] = "before"
    status: int = 503
    cause: Literal["rate", "outage", "down"] = "rate"


def hits(rng: random.Random, rate: float) -> bool:
    """True with probability ``rate``; draws nothing when the rate is 0 so seeds stay stable."""
    return rate > 0.0 and rng.random() < rate


def operation_of(path: str, body: bytes | None) -> Operation:
    """The operation family of a request to the PayTabs API.

    ``/payment/request`` carries three: a follow-up names a ``tran_type`` of refund, capture,
    void or release; a recurring (``tran_class``) request charges a token; anything else creates
    a page. A body that is not a JSON object counts as a create (PayTabs will refuse it anyway).
    """
    if path == "/payment/query":
        return "query"
    if path.startswith("/payment/token"):
        return "token"
    if path != REQUEST_PATH or not body:
        return "create"
    try:
        decoded = json.loads(body)
    except ValueError:
        return "create"
    if not isinstance(decoded, dict):
        return "create"
    if str(decoded.get("tran_type", "")).lower() in FOLLOW_UP_TYPES:
        return "follow_up"
    if str(decoded.get("tran_class", "")).lower() == "recurring":
        return "token"
    return "create"


def plan_request(
    faults: Faults,
    rng: random.Random,
    elapsed_seconds: float,
    operation: Operation | None = None,
) -> FaultPlan:
    """Decide the fault for one request to a faulted path (``operation``: its family, which
    matters only for outages limited to some operations; None matches only unlimited ones)."""
    if faults.down:
        return FaultPlan(
            action=_outage_action(faults.down_mode), status=faults.down_status, cause="down"
        )
    for outage in faults.outages:
        if outage.covers(elapsed_seconds, operation):
            return FaultPlan(
                action=_outage_action(outage.mode), status=outage.status, cause="outage"
            )

    latency_ms = faults.latency_ms
    if faults.latency_jitter_ms > 0:
        latency_ms += rng.uniform(0.0, faults.latency_jitter_ms)
    if hits(rng, faults.latency_spike_rate):
        latency_ms += faults.latency_spike_ms
    latency = latency_ms / 1000.0

    if hits(rng, faults.hang_rate):
        return FaultPlan(latency, "hang", _phase(faults.hang_phase, rng))
    if hits(rng, faults.reset_rate):
        return FaultPlan(latency, "reset", _phase(faults.reset_phase, rng))
    if hits(rng, faults.error_rate):
        status = rng.choice(faults.error_statuses)
        return FaultPlan(latency, "error", _phase(faults.error_phase, rng), status)
    return FaultPlan(latency)


def _outage_action(mode: OutageMode) -> FaultAction:
    return "error" if mode == "status" else mode


def _phase(phase: Phase, rng: random.Random) -> Literal["before", "after"]:
    if phase == "mixed":
        return "before" if rng.random() < 0.5 else "after"
    return phase
