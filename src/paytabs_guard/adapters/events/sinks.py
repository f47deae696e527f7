"""Where the relay delivers events: a sink has a stable name and one async ``deliver``.

A sink's name is its identity in ``event_deliveries``: renaming a sink starts a new one (it
receives events fanned out from then on) and strands the old name's pending deliveries.
``deliver`` returns when the event is accepted and raises anything on failure; the relay
records the error and retries with backoff. A sink must be idempotent for consumers that
dedupe on the CloudEvents ``id``: a delivery can repeat (at least once, never exactly once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeGuard, cast, runtime_checkable

from .cloudevents import OutboxEvent


@runtime_checkable
class Sink(Protocol):
    """One destination of events, delivered in order per payment."""

    @property
    def name(self) -> str:
        """Stable and unique among the relay's sinks, e.g. ``redis``, ``webhook:erp``."""
        ...

    def accepts(self, event_type: str) -> bool:
        """Whether events of ``event_type`` go to this sink (decided when they are fanned out)."""
        ...

    async def deliver(self, event: OutboxEvent) -> None:
        """Hand the event over; return when it is accepted, raise when it is not."""
        ...


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that takes a batch at once (Redis pipelines it): one outcome per event, None
    when accepted, the error when not. The relay uses it when a sink has it."""

    async def deliver_many(self, events: Sequence[OutboxEvent]) -> Sequence[Exception | None]: ...


@runtime_checkable
class RequestPerEventSink(BatchSink, Protocol):
    """A batch sink that still sends every event as a request of its own, several at once (a
    webhook endpoint). The relay has it trace each request in its own event's trace
    (``attempts_before``: each delivery's attempts so far), not the batch as one span: a
    request's ``traceparent`` must continue its own payment's trace."""

    async def deliver_each(
        self, events: Sequence[OutboxEvent], attempts_before: Sequence[int]
    ) -> Sequence[Exception | None]: ...


@runtime_checkable
class RoutedSink(Sink, Protocol):
    """A sink whose ``accepts`` is a fixed set of types, given as data: the relay can then fan
    out in one statement on PostgreSQL. ``accepted_types`` is None for every type."""

    @property
    def accepted_types(self) -> frozenset[str] | None: ...


class SinkSet(Protocol):
    """Something that contributes sinks that may change at run time (the ``EventBus``)."""

    def sinks(self) -> Sequence[Sink]: ...


_KINDS: dict[tuple[type, type], bool] = {}


def _is_a(thing: object, kind: type) -> bool:
    """``isinstance(thing, kind)`` for the protocols above, asked once per class. Such a check
    looks up every member by name (15-30 µs each here), and the relay asked several per run,
    on every callback's events. A sink's kind is its class's: the members are methods and
    properties."""
    key = (type(thing), kind)
    known = _KINDS.get(key)
    if known is None:
        known = _KINDS[key] = isinstance(thing, kind)
    return known


def sinks_of(source: Sink | SinkSet) -> Sequence[Sink]:
    """The sink itself, or the sinks a set of them (the ``EventBus``) holds now."""
    if _is_a(source, Sink):
        return [cast(Sink, source)]
    return cast(SinkSet, source).sinks()


def takes_batches(sink: Sink) -> TypeGuard[BatchSink]:
    return _is_a(sink, BatchSink)


def sends_each(sink: Sink) -> TypeGuard[RequestPerEventSink]:
    return _is_a(sink, RequestPerEventSink)


def is_routed(sink: Sink) -> TypeGuard[RoutedSink]:
    return _is_a(sink, RoutedSink)


class DeliveryFailed(Exception):
    """A sink refused an event; the message says why (never a secret or the body)."""


class SinkUnreachable(DeliveryFailed):
    """The sink could not be reached at all (Redis down, the endpoint's host refusing or not
    taking connections): an outage of the sink, not a refusal of this event. The relay tries
    again soon and never makes a dead letter of it: the attempt is not counted, and a
    payment's later events wait, in order, until the sink is back."""
