"""CloudEvents envelopes, the subscriber registry and the backoff policy, without I/O."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as redis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from paytabs_guard.adapters.events import (
    Backoff,
    CloudEvent,
    EventBus,
    InvalidCloudEvent,
    OutboxRelay,
    RedisStreamSink,
    WebhookEndpoint,
    WebhookSink,
)
from paytabs_guard.adapters.events.sinks import (
    BatchSink,
    RequestPerEventSink,
    RoutedSink,
    Sink,
    is_routed,
    sends_each,
    sinks_of,
    takes_batches,
)
from paytabs_guard.adapters.events.subscribers import SubscriberSink
from paytabs_guard.adapters.sql.outbox import envelope_json
from paytabs_guard.domain import Money, PaymentCreated, PaymentState, TranType

from .events_support import BatchRecordingSink, RecordingSink, RoutedRecordingSink

CREATED = PaymentCreated(
    payment_id="pay_01JH8Z3K",
    cart_id="order-1001",
    state=PaymentState.CREATED,
    occurred_at=datetime(2025, 1, 29, 9, 0, tzinfo=UTC),
    amount=Money.of("12.500", "KWD"),
    tran_type=TranType.AUTH,
    description="Order 1",
)


def test_the_stored_envelope_parses_and_serialises_back_byte_for_byte() -> None:
    stored = envelope_json(CREATED)
    event = CloudEvent.from_json(stored)

    assert event.id == "72305a7e-b5dc-5d40-bb41-8e7b296bb187"  # as in docs/states.md
    assert (event.type, event.subject, event.time) == (
        "payment.created",
        "pay_01JH8Z3K",
        "2025-01-29T09:00:00Z",
    )
    assert event.data["amount"] == "12.500"
    assert event.to_json() == stored


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"specversion": "0.3", "id": "x", "type": "t", "source": "s"}', "specversion"),
        ('{"specversion": "1.0", "type": "t", "source": "s"}', "id must be"),
        ('{"specversion": "1.0", "id": "", "type": "t", "source": "s"}', "id must be"),
        ('{"specversion": "1.0", "id": "x", "type": "t", "source": "s", "time": 1}', "time"),
        ('{"specversion": "1.0", "id": "x", "type": "t", "source": "s", "data": []}', "data"),
    ],
)
def test_a_malformed_envelope_names_the_rule_it_breaks(text: str, rule: str) -> None:
    with pytest.raises(InvalidCloudEvent, match=rule):
        CloudEvent.from_json(text)


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8), st.one_of(st.text(), st.integers(), st.booleans())
    )
)
def test_any_json_data_survives_a_round_trip(data: dict[str, str | int | bool]) -> None:
    event = CloudEvent(id="e1", type="payment.created", data=dict(data))
    assert CloudEvent.from_json(event.to_json()) == event
    assert json.loads(event.to_json())["specversion"] == "1.0"


async def completed(event: CloudEvent) -> None:
    del event


async def refunded(event: CloudEvent) -> None:
    del event


class Mailer:
    async def send(self, event: CloudEvent) -> None:
        del event


def test_a_subscriber_is_named_after_its_handler_and_may_take_several_types() -> None:
    events = EventBus()
    first = events.on("payment.completed", completed)
    again = events.on("payment.refunded", completed)

    assert first is again
    assert first.sink_name == f"subscriber:{__name__}.completed"
    assert first.accepts("payment.refunded")
    assert not first.accepts("payment.failed")
    assert [sink.name for sink in events.sinks()] == [first.sink_name]


def test_a_bound_method_registered_twice_is_one_subscriber() -> None:
    mailer = Mailer()
    events = EventBus()
    events.on("payment.completed", mailer.send)
    events.on("payment.failed", mailer.send)
    [subscriber] = events.subscribers()
    assert subscriber.name == f"{__name__}.Mailer.send"
    assert subscriber.event_types == {"payment.completed", "payment.failed"}


def test_another_handler_under_a_taken_name_is_refused() -> None:
    events = EventBus()
    events.on("payment.completed", completed, name="erp")
    with pytest.raises(ValueError, match="already subscribed as 'erp'"):
        events.on("payment.completed", refunded, name="erp")
    events.on("payment.refunded", refunded, name="erp-refunds")
    assert [s.name for s in events.subscribers()] == ["erp", "erp-refunds"]
    with pytest.raises(ValueError, match="event_type"):
        events.on("", completed)


def test_the_wildcard_subscribes_to_every_type() -> None:
    events = EventBus()
    events.on("*", completed)
    [sink] = events.sinks()
    assert isinstance(sink, SubscriberSink)
    assert sink.accepts("payment.created")
    assert sink.accepts("circuit_breaker.opened")


def test_backoff_ceilings_double_up_to_the_cap() -> None:
    backoff = Backoff(base_seconds=2, cap_seconds=60)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling(10_000) == 60


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_stays_between_zero_and_the_ceiling(attempts: int, seed: int) -> None:
    backoff = Backoff(base_seconds=1, cap_seconds=3600)
    delay = backoff.delay(attempts, random.Random(seed))
    assert 0 <= delay <= backoff.ceiling(attempts)


def test_bad_relay_settings_are_refused() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///unused.db")  # never connects
    with pytest.raises(ValueError, match="base_seconds"):
        Backoff(base_seconds=0)
    with pytest.raises(ValueError, match="base_seconds"):
        OutboxRelay(engine, [], backoff=(10, 1))
    with pytest.raises(ValueError, match="max_attempts"):
        OutboxRelay(engine, [], max_attempts=0)
    with pytest.raises(ValueError, match="batch_size"):
        OutboxRelay(engine, [], batch_size=0)
    with pytest.raises(ValueError, match="lease_seconds"):
        OutboxRelay(engine, [], lease_seconds=0)
    assert OutboxRelay(engine, [], instance_id="i-1").instance_id == "i-1"


def test_a_sinks_kind_is_what_isinstance_says_asked_once_per_class() -> None:
    # The relay asks these on every run; a runtime-checkable protocol's isinstance looks up
    # each member (15-30 µs), so the answer is kept per class. It must stay isinstance's.
    endpoint = WebhookEndpoint(
        "erp",
        "https://erp.example/hooks",
        (SecretStr("whsec_YS1zZWNyZXQta2V5LWZvci10aGUta2luZC10ZXN0LW9ubHk="),),
    )
    bus = EventBus()
    bus.on("*", _noop, name="fulfilment")
    kinds: list[Sink] = [
        RecordingSink("plain"),
        RoutedRecordingSink("routed"),
        BatchRecordingSink("batch"),
        RedisStreamSink(redis.Redis(), "events"),
        WebhookSink(endpoint, httpx.AsyncClient()),
        *bus.sinks(),
    ]
    for _ in range(2):  # the second round answers from what the first kept
        for sink in kinds:
            assert takes_batches(sink) is isinstance(sink, BatchSink), sink
            assert sends_each(sink) is isinstance(sink, RequestPerEventSink), sink
            assert is_routed(sink) is isinstance(sink, RoutedSink), sink
            assert list(sinks_of(sink)) == [sink]
    assert list(sinks_of(bus)) == list(bus.sinks())
    assert [takes_batches(s) for s in kinds] == [False, False, True, True, True, False]
    assert [sends_each(s) for s in kinds] == [False, False, False, False, True, False]


async def _noop(event: CloudEvent) -> None:
    return None
