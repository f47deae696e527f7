"""Event delivery: the outbox relay and its sinks (docs/events.md).

Payment events are written to the ``outbox`` table in the transaction that changes the payment.
``OutboxRelay`` delivers them at least once, in order per payment, to every sink: in-process
subscribers (``EventBus.on``), a Redis Stream (``RedisStreamSink``) and signed outgoing
webhooks (``WebhookSink``). Failed deliveries back off, then become dead letters
(``dead_letters``) an operator can list and replay.
"""

from .backoff import Backoff
from .cloudevents import CloudEvent, InvalidCloudEvent, OutboxEvent
from .dead_letters import DeadLetter, count_dead_letters, list_dead_letters, replay
from .delivery_marks import RelayStats
from .outgoing_webhooks import WebhookEndpoint, WebhookSink, webhook_sinks
from .redis_streams import RedisStreamSink, StreamConsumer, StreamEntry
from .relay import OutboxRelay
from .sinks import DeliveryFailed, RoutedSink, Sink, SinkSet
from .subscribers import EventBus, Handler, Subscriber

__all__ = [
    "Backoff",
    "CloudEvent",
    "DeadLetter",
    "DeliveryFailed",
    "EventBus",
    "Handler",
    "InvalidCloudEvent",
    "OutboxEvent",
    "OutboxRelay",
    "RedisStreamSink",
    "RelayStats",
    "RoutedSink",
    "Sink",
    "SinkSet",
    "StreamConsumer",
    "StreamEntry",
    "Subscriber",
    "WebhookEndpoint",
    "WebhookSink",
    "count_dead_letters",
    "list_dead_letters",
    "replay",
    "webhook_sinks",
]
