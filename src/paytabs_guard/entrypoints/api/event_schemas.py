"""The HTTP contract of the events API (``events.py``): response and request bodies."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from paytabs_guard.domain.events import EVENT_TYPES
from paytabs_guard.service.events import (
    MAX_REPLAY_IDS,
    DeadLetterEntry,
    Delivery,
    EventWithDeliveries,
    StoredEvent,
)

#: An event type a client sends (a filter, a replay): described as the list of known types, so a
#: generated client offers them. Checked by the routes, whose 422 names the types; an event
#: type in an answer stays a plain string, so a type added later does not break old clients.
EVENT_TYPE_SCHEMA: Final = WithJsonSchema({"type": "string", "enum": sorted(EVENT_TYPES)})


class DeliveryOut(BaseModel):
    """Where one event stands with one sink."""

    sink: str = Field(description="subscriber:NAME, redis or webhook:NAME")
    status: Literal["pending", "delivered", "dead"]
    attempts: int = Field(description="Attempts made so far (reset by a redelivery)")
    last_error: str | None = Field(description="Why the last failed attempt failed")
    next_attempt_at: datetime | None = Field(description="While pending: when it is tried next")
    delivered_at: datetime | None
    dead_at: datetime | None = Field(description="When it became a dead letter")

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            sink=delivery.sink,
            status=delivery.status,  # the table's CHECK constraint keeps it one of the three
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            dead_at=delivery.dead_at,
        )


class EventOut(BaseModel):
    """One lifecycle event; ``event`` is the CloudEvents envelope exactly as sinks receive it."""

    id: str
    type: str
    payment_id: str
    created_at: datetime
    fanned_out_at: datetime | None = Field(
        description="When the relay made its deliveries (null: not yet, or no sink configured)"
    )
    event: dict[str, Any]

    @classmethod
    def of(cls, stored: StoredEvent) -> EventOut:
        return cls(**_event_fields(stored))


class EventWithDeliveriesOut(EventOut):
    deliveries: list[DeliveryOut]

    @classmethod
    def of_deliveries(cls, found: EventWithDeliveries) -> EventWithDeliveriesOut:
        return cls(
            **_event_fields(found.event),
            deliveries=[DeliveryOut.of(d) for d in found.deliveries],
        )


def _event_fields(stored: StoredEvent) -> dict[str, Any]:
    return {
        "id": stored.id,
        "type": stored.type,
        "payment_id": stored.payment_id,
        "created_at": stored.created_at,
        "fanned_out_at": stored.fanned_out_at,
        "event": json.loads(stored.envelope),
    }


class EventListOut(BaseModel):
    """Oldest first. Keep ``next_cursor`` and pass it as ``cursor``: with ``has_more`` false
    there is nothing newer yet, and the same cursor later returns what arrived since."""

    data: list[EventOut]
    next_cursor: str | None
    has_more: bool


class PaymentEventsOut(BaseModel):
    """Every event of one payment, oldest first, with its deliveries per sink."""

    payment_id: str
    data: list[EventWithDeliveriesOut]


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Each name bounded as a sink is everywhere else (200): the 422 for a sink the event
    # never had repeats the names, and unbounded they filled it to the body's 64 KiB.
    sinks: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="Only these sinks (left out: every sink that has delivered or given up; "
        "an empty list names none and is refused)",
    )


class RedeliverOut(BaseModel):
    event_id: str
    sinks: list[str] = Field(description="The sinks that will receive the event again")


class DeadLetterOut(BaseModel):
    id: int = Field(description="The delivery's id: what replay takes")
    event_id: str
    type: str
    payment_id: str
    delivery: DeliveryOut

    @classmethod
    def of(cls, entry: DeadLetterEntry) -> DeadLetterOut:
        return cls(
            id=entry.delivery.id,
            event_id=entry.event_id,
            type=entry.event_type,
            payment_id=entry.payment_id,
            delivery=DeliveryOut.of(entry.delivery),
        )


class DeadLetterListOut(BaseModel):
    """Dead letters as they are now, oldest delivery first: a list to work through, not a
    feed. ``next_cursor`` is null on the last page; ``has_more`` says the same, as on the
    events feed."""

    data: list[DeadLetterOut]
    next_cursor: str | None
    has_more: bool


class UnconfiguredSinkOut(BaseModel):
    """A sink that is no longer configured and still has deliveries nothing will send."""

    sink: str
    pending: int = Field(description="Deliveries still pending for it")
    dead: int = Field(description="Its dead letters (a replay to it is refused)")


class UnconfiguredSinksOut(BaseModel):
    """Every sink not configured now that has pending or dead deliveries, by name."""

    data: list[UnconfiguredSinkOut]


class DropSinkIn(BaseModel):
    """The sink whose pending and dead deliveries to delete (it must not be configured)."""

    model_config = ConfigDict(extra="forbid")

    sink: str = Field(min_length=1, max_length=200)


class DropSinkOut(BaseModel):
    sink: str
    dropped: int = Field(description="Pending and dead deliveries deleted")


_MAX_ID = 2**63 - 1


def _fits_64_bits(value: int) -> int:
    # A validator, not ``le``: FastAPI's OpenAPI model would print the bound as a float.
    if value > _MAX_ID:
        raise ValueError(f"must be at most {_MAX_ID}: dead letter ids are 64-bit")
    return value


#: A dead letter's id: a positive 64-bit integer as the database stores it. Strict, so ``true``
#: is not 1 and ``1e2`` not 100; past 64 bits the database driver would fail (a 500), not refuse.
DeadLetterId = Annotated[int, Field(strict=True, ge=1), AfterValidator(_fits_64_bits)]


class ReplayIn(BaseModel):
    """Name the dead letters to send again: by ``ids``, or every one of a ``sink`` and/or
    ``type`` (combined, they narrow each other)."""

    # An empty body names nothing (a 422 that says so): the schema says it too.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    ids: list[DeadLetterId] = Field(default_factory=list, max_length=MAX_REPLAY_IDS)
    sink: str | None = Field(None, min_length=1, max_length=200)
    type: Annotated[
        str | None,
        WithJsonSchema({"anyOf": [EVENT_TYPE_SCHEMA.json_schema, {"type": "null"}]}),
    ] = Field(None, min_length=1, max_length=200)


class ReplayOut(BaseModel):
    replayed: int = Field(
        description="Dead letters put back to pending (ones no longer dead are not counted)"
    )
