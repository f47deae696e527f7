"""The relay's spans: one per delivery attempt of an event to a sink, in the event's trace.

An event written inside a traced request carries that trace's context (``outbox.traceparent``),
so its delivery span is a child of the request's unit of work: create, PayTabs call, commit and
every sink's delivery read as one trace, however much later the relay gets to it. A batch sink
(Redis) takes many events in one call: its span links to each event's trace instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from paytabs_guard import tracing

from .cloudevents import OutboxEvent


def delivery_span(sink: str, events: Sequence[OutboxEvent], attempts_before: int) -> tracing.Span:
    """The span around handing ``events`` to ``sink`` (:data:`tracing.NO_SPAN` while off)."""
    if not tracing.ENABLED:
        return tracing.NO_SPAN
    if len(events) == 1:
        (event,) = events
        span = tracing.span(
            f"deliver {event.type}",
            "producer",
            parent=(event.traceparent, event.tracestate),
            payment_id=event.payment_id,
            new_scope=True,
        )
        span.set("cloudevents.event_id", event.event_id)
        span.set("cloudevents.event_type", event.type)
    else:
        span = tracing.span(
            f"deliver {len(events)} events",
            "producer",
            links=[(event.traceparent, event.tracestate) for event in events],
            new_scope=True,
        )
        span.set("messaging.batch.message_count", len(events))
    span.set("messaging.destination.name", sink)
    span.set("paytabs_guard.delivery.attempt", attempts_before + 1)
    return span
