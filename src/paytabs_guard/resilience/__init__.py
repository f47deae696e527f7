"""Resilience for gateway calls: an asyncio circuit breaker with a rolling error-rate window.

A leaf package: it imports nothing else of ``paytabs_guard``. Typical wiring::

    registry = BreakerRegistry(BreakerConfig.from_milliseconds(...), shared=shared_or_none)
    payment = await registry.get("create").call(lambda: client.create(request))

Shared state (``SharedBreakerState``) lives in :mod:`paytabs_guard.resilience.shared`, which
needs redis-py; import it from there.
"""

from paytabs_guard.resilience.admission import Reservation
from paytabs_guard.resilience.breaker import CircuitBreaker, Fallback, SharedHook
from paytabs_guard.resilience.clock import ManualClock, MonotonicClock, WallClock, utc_now
from paytabs_guard.resilience.config import (
    BreakerConfig,
    FailurePredicate,
    every_exception,
    no_exception,
)
from paytabs_guard.resilience.errors import BreakerError, CallTimeout, CircuitOpenError
from paytabs_guard.resilience.events import BreakerEvent, BreakerState, EventType, Subscriber
from paytabs_guard.resilience.prober import BreakerProber, ProbeFn, ProbeLease
from paytabs_guard.resilience.registry import BreakerRegistry, SharedAttachable
from paytabs_guard.resilience.retry import (
    RetryBudget,
    RetryConfig,
    RetryPolicy,
)
from paytabs_guard.resilience.stats import (
    BreakerSnapshot,
    LifetimeStats,
    ProbeStats,
    SharedStatus,
    WindowStats,
)

__all__ = [
    "BreakerConfig",
    "BreakerError",
    "BreakerEvent",
    "BreakerProber",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitOpenError",
    "EventType",
    "FailurePredicate",
    "Fallback",
    "LifetimeStats",
    "ManualClock",
    "MonotonicClock",
    "ProbeFn",
    "ProbeLease",
    "ProbeStats",
    "Reservation",
    "RetryBudget",
    "RetryConfig",
    "RetryPolicy",
    "SharedAttachable",
    "SharedHook",
    "SharedStatus",
    "Subscriber",
    "WallClock",
    "WindowStats",
    "every_exception",
    "no_exception",
    "utc_now",
]
