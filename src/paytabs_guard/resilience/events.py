"""Breaker states and the events a breaker publishes to its subscribers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

logger = logging.getLogger(__name__)


class BreakerState(StrEnum):
    """Where a breaker is.

    ``closed``, ``open`` and ``half_open`` are driven by the window; the other three are set by
    hand: ``forced_open`` rejects everything, ``forced_closed`` admits everything (with timeout,
    classification and fallback, never tripping), ``disabled`` is a plain pass-through that only
    measures.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"
    DISABLED = "disabled"


class EventType(StrEnum):
    """Names of the events, as they appear in CloudEvents ``type`` fields and metrics labels.

    State changes: ``opened`` (into ``open`` or ``forced_open``), ``half_opened``, ``closed``
    (into ``closed`` or ``forced_closed``), ``disabled``. Outcomes: ``success`` (also for
    exceptions the failure predicate excused), ``failure``, ``timeout`` (a failure, reported
    only as ``timeout``), ``reject`` and ``fallback``. ``probe``: a recovery probe of this
    instance was answered (reason ``succeeded``) or not (``failed``); never in the window.
    ``probe_hurried``: a caller turned away or held brought the next recovery probe forward
    (at most once per probe; the prober wakes for it).
    """

    OPENED = "circuit_breaker.opened"
    HALF_OPENED = "circuit_breaker.half_opened"
    CLOSED = "circuit_breaker.closed"
    DISABLED = "circuit_breaker.disabled"
    SUCCESS = "circuit_breaker.success"
    FAILURE = "circuit_breaker.failure"
    TIMEOUT = "circuit_breaker.timeout"
    REJECT = "circuit_breaker.reject"
    FALLBACK = "circuit_breaker.fallback"
    PROBE = "circuit_breaker.probe"
    PROBE_HURRIED = "circuit_breaker.probe_hurried"


STATE_EVENTS: dict[BreakerState, EventType] = {
    BreakerState.CLOSED: EventType.CLOSED,
    BreakerState.OPEN: EventType.OPENED,
    BreakerState.HALF_OPEN: EventType.HALF_OPENED,
    BreakerState.FORCED_OPEN: EventType.OPENED,
    BreakerState.FORCED_CLOSED: EventType.CLOSED,
    BreakerState.DISABLED: EventType.DISABLED,
}


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """Something that happened to a breaker.

    Attributes:
        type: What happened.
        breaker: Name of the breaker.
        state: The breaker's state after the event.
        at: Monotonic reading of the breaker's clock.
        timestamp: Wall-clock time of the event.
        previous_state: For state changes, the state left.
        reason: For state changes, why (``error_rate``, ``consecutive_failures``, ``stalled``,
            ``trial_failed``, ``trial_succeeded``, ``degraded`` (closed after trials that partly
            succeeded),
            ``shared``, ``forced``, ``reset``, ``disabled``, ``probe``, ``shared_probe``; ``shared``
            also for a manual state or reset another instance's operator command caused); for a
            failure counted because the call was slow, ``slow_call``; for a timeout not counted
            because PayTabs answered a later call first, ``stale``; for a probe, its verdict.
        latency: For outcomes of attempted calls, seconds the call took.
        error_type: Qualified class name of the exception involved, if any (never the message,
            which might carry data that must not be logged).
        error_rate: For ``opened`` by the window, the error rate that tripped it.
    """

    type: EventType
    breaker: str
    state: BreakerState
    at: float
    timestamp: datetime
    previous_state: BreakerState | None = None
    reason: str | None = None
    latency: float | None = None
    error_type: str | None = None
    error_rate: float | None = None


Subscriber = Callable[[BreakerEvent], None]
"""A synchronous callable that receives every event of the breakers it is subscribed to."""


def error_type_name(error: BaseException | None) -> str | None:
    """``module.QualName`` of an exception's class, or ``None``."""
    if error is None:
        return None
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def deliver(subscribers: Sequence[Subscriber], event: BreakerEvent) -> None:
    """Call each subscriber with ``event``; a subscriber that raises is logged and skipped.

    A broken metrics or logging hook must never turn a payment call into a failure.
    """
    for subscriber in tuple(subscribers):  # a copy: subscribers may unsubscribe while called
        try:
            subscriber(event)
        except Exception:
            logger.exception(
                "circuit breaker subscriber %r failed on %s", subscriber, event.type.value
            )
