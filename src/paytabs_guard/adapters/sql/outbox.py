"""The writing half of the outbox: CloudEvents envelopes, inserted with the state change.

The unit of work calls :func:`append` inside its transaction, so an event row exists if and only
if the change that caused it was committed. The relay (``adapters/events``) reads the rows in
``seq`` order and sends the stored envelope text byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, TypeAlias

from paytabs_guard import tracing
from paytabs_guard.domain import PaymentEvent
from paytabs_guard.domain.events import EventData

from .tables import outbox
from .writes import Writes

SOURCE: Final = "paytabs-guard"

Envelope: TypeAlias = dict[str, str | EventData]
"""A CloudEvents 1.0 envelope: string attributes and the event's JSON-safe ``data``."""


def envelope(event: PaymentEvent, event_id: str | None = None) -> Envelope:
    """The CloudEvents 1.0 envelope of ``event`` (docs/states.md, "Envelope"); ``event_id``
    when the caller has it already (``PaymentEvent.event_id`` hashes on every call)."""
    return {
        "specversion": "1.0",
        "id": event.event_id if event_id is None else event_id,
        "source": SOURCE,
        "type": event.type,
        "subject": event.payment_id,
        "time": _rfc3339(event.occurred_at),
        "datacontenttype": "application/json",
        "data": dict(event.data),
    }


def envelope_json(event: PaymentEvent, event_id: str | None = None) -> str:
    """The envelope as stored: compact JSON in the attribute order above, UTF-8 unescaped."""
    return json.dumps(envelope(event, event_id), ensure_ascii=False, separators=(",", ":"))


async def append(writes: Writes, events: Sequence[PaymentEvent], *, now: datetime) -> None:
    """Insert ``events`` in order; an event id already in the outbox is skipped, never doubled.

    While tracing, each row keeps the current trace context (the unit of work's span), so the
    events' deliveries continue the trace of the request that caused them.
    """
    if not events:
        return
    traceparent, tracestate = tracing.current_context()
    rows = []
    for event in events:
        event_id = event.event_id  # hashed on every access: once for the row and its envelope
        rows.append(
            {
                "event_id": event_id,
                "payment_id": event.payment_id,
                "type": event.type,
                "envelope": envelope_json(event, event_id),
                "created_at": now,
                "traceparent": traceparent,
                "tracestate": tracestate,
            }
        )
    await writes.insert_events(outbox, rows)


def _rfc3339(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone; events carry aware times")
    return at.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
