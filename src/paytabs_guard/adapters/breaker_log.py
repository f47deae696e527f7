"""A log line for every circuit-breaker state change (docs/operations.md, "Logs").

The breakers' events fed the metrics and the console's chart, but nothing was logged: an
operator reading the service's log during a PayTabs incident saw creates answered 503 and no
word of why, when the breaker opened or when it closed again. Each state change is now one
line, ``"event": "circuit breaker opened"`` (a warning: sales are being turned away from then
on) or ``half-opened``, ``closed``, ``disabled`` (info), with the breaker, the states left and
entered, the reason (``error_rate``, ``consecutive_failures``, ``stalled``, ``probe``,
``trial_failed``, ``forced``, ``shared``, ...) and, for an opening by the window, its error
rate. Outcomes of single calls and probes are not logged (the metrics count them): an outage
would write a line per rejected sale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paytabs_guard.observability import get_logger
from paytabs_guard.resilience import BreakerEvent, BreakerRegistry, EventType

log = get_logger("paytabs_guard.circuit_breaker")

_MESSAGES = {
    EventType.OPENED: "circuit breaker opened",
    EventType.HALF_OPENED: "circuit breaker half-opened",
    EventType.CLOSED: "circuit breaker closed",
    EventType.DISABLED: "circuit breaker disabled",
}


def log_transition(event: BreakerEvent) -> None:
    """Log ``event`` if it is a state change (a breaker subscriber)."""
    message = _MESSAGES.get(event.type)
    if message is None:
        return
    fields: dict[str, Any] = {
        "breaker": event.breaker,
        "from_state": event.previous_state.value if event.previous_state else None,
        "to_state": event.state.value,
        "reason": event.reason,
    }
    if event.error_rate is not None:
        fields["error_rate"] = round(event.error_rate, 1)
    if event.type is EventType.OPENED:
        log.warning(message, **fields)
    else:
        log.info(message, **fields)


def log_breaker_transitions(breakers: BreakerRegistry) -> Callable[[], None]:
    """Log every state change of ``breakers``; returns the unsubscriber."""
    return breakers.subscribe(log_transition)
