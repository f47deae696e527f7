"""In-process subscribers: ``events.on("payment.completed", handler)``.

Each subscriber is a sink of its own, named ``subscriber:<name>`` (by default the handler's
qualified name), so a failing handler is retried on its own schedule and never blocks another
subscriber. Handlers run from the outbox relay, after the state change committed, at least once:
make them idempotent on ``event.id``. In a deployment with several instances, register the same
subscribers everywhere: a delivery is made once per subscriber name by whichever instance claims
it, not once per instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .cloudevents import CloudEvent, OutboxEvent
from .sinks import Sink

Handler = Callable[[CloudEvent], Awaitable[None]]
"""``async def handler(event: CloudEvent) -> None``; raising means "retry later"."""

ALL: Final = "*"
SINK_PREFIX: Final = "subscriber:"


def default_name(handler: Handler) -> str:
    """``module.qualname`` of ``handler``: stable across restarts as long as the code is."""
    module = getattr(handler, "__module__", None) or "?"
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{qualname}"


@dataclass(slots=True, eq=False)
class Subscriber:
    """One handler under one stable name, for one or more event types (``*`` = all)."""

    name: str
    handler: Handler
    event_types: set[str] = field(default_factory=set)

    @property
    def sink_name(self) -> str:
        return SINK_PREFIX + self.name

    def accepts(self, event_type: str) -> bool:
        return ALL in self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class SubscriberSink:
    """A subscriber seen as a relay sink."""

    subscriber: Subscriber

    @property
    def name(self) -> str:
        return self.subscriber.sink_name

    def accepts(self, event_type: str) -> bool:
        return self.subscriber.accepts(event_type)

    @property
    def accepted_types(self) -> frozenset[str] | None:
        types = self.subscriber.event_types
        return None if ALL in types else frozenset(types)

    async def deliver(self, event: OutboxEvent) -> None:
        await self.subscriber.handler(event.cloud_event())


class EventBus:
    """The registry of in-process subscribers; hand it to ``OutboxRelay`` as one of its sinks."""

    def __init__(self) -> None:
        self._subscribers: dict[str, Subscriber] = {}

    def on(self, event_type: str, handler: Handler, *, name: str | None = None) -> Subscriber:
        """Call ``handler`` for every event of ``event_type`` (``"*"``: every event).

        The same handler (same name) registered for several types is one subscriber. Another
        handler under a name already taken is refused: pass ``name=`` to tell them apart.
        Events fanned out before a subscriber was registered are not delivered to it.
        """
        if not event_type:
            raise ValueError("event_type must be an event type such as 'payment.completed' or '*'")
        key = name if name is not None else default_name(handler)
        if not key:
            raise ValueError("a subscriber name must not be empty")
        subscriber = self._subscribers.get(key)
        if subscriber is None:
            subscriber = Subscriber(name=key, handler=handler)
            self._subscribers[key] = subscriber
        elif subscriber.handler != handler:  # == : bound methods are new objects each time
            raise ValueError(
                f"another handler is already subscribed as {key!r}; pass name= to tell them apart"
            )
        subscriber.event_types.add(event_type)
        return subscriber

    def subscribers(self) -> Sequence[Subscriber]:
        return tuple(self._subscribers.values())

    def sinks(self) -> Sequence[Sink]:
        """One sink per subscriber, in registration order."""
        return tuple(SubscriberSink(subscriber) for subscriber in self._subscribers.values())
