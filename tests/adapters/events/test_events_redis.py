"""Events on a real Redis Stream, read by two consumers of one consumer group."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events import (
    CloudEvent,
    OutboxEvent,
    RedisStreamSink,
    StreamConsumer,
    StreamEntry,
)
from paytabs_guard.adapters.events.sinks import SinkUnreachable
from testkit.clock import FakeClock

from .events_support import add_event, patient_relay

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_each_event_reaches_the_consumer_group_once(
    engine: AsyncEngine, client: redis.Redis, redis_prefix: str
) -> None:
    stream = f"{redis_prefix}events"
    written = [
        await add_event(engine, f"pay_{n % 3}", "payment.created", occurrence=str(n))
        for n in range(12)
    ]
    first = StreamConsumer(client, stream, "fulfilment", "worker-1")
    second = StreamConsumer(client, stream, "fulfilment", "worker-2")
    await first.ensure_group()
    await second.ensure_group()  # the group exists already: harmless

    stats = await patient_relay(
        engine, [RedisStreamSink(client, stream)], clock=FakeClock()
    ).run_once()
    assert stats.delivered == 12

    seen: dict[str, list[StreamEntry]] = {"worker-1": [], "worker-2": []}
    while True:
        batch_1 = await first.read(count=5)
        batch_2 = await second.read(count=5)
        if not batch_1 and not batch_2:
            break
        seen["worker-1"] += batch_1
        seen["worker-2"] += batch_2
        await first.ack(*batch_1)
        await second.ack(*batch_2)

    entries = seen["worker-1"] + seen["worker-2"]
    assert seen["worker-1"]  # the group shared the work
    assert seen["worker-2"]
    assert sorted(entry.event_id for entry in entries) == sorted(e.event_id for e in written)
    by_id = {event.event_id: event for event in written}
    for entry in entries:
        stored = by_id[entry.event_id]
        assert (entry.type, entry.payment_id, entry.envelope) == (
            stored.type,
            stored.payment_id,
            stored.envelope,
        )
        assert entry.cloud_event() == CloudEvent.from_json(stored.envelope)
    pending = await client.xpending(stream, "fulfilment")
    assert pending["pending"] == 0
    stream_order = [entry.event_id for entry in await first.read(count=1)]
    assert stream_order == []  # nothing left for the group


async def test_an_entry_a_crashed_consumer_never_acked_is_claimed_by_another(
    engine: AsyncEngine, redis_url: str, redis_prefix: str
) -> None:
    stream = f"{redis_prefix}events"
    client = redis.Redis.from_url(redis_url)  # bytes replies: the helper decodes them itself
    try:
        await _crash_and_claim(engine, client, stream)
    finally:
        await client.aclose()


async def _crash_and_claim(engine: AsyncEngine, client: redis.Redis, stream: str) -> None:
    event = await add_event(engine, "pay_a", "payment.completed")
    crashed = StreamConsumer(client, stream, "billing", "worker-1")
    survivor = StreamConsumer(client, stream, "billing", "worker-2")
    await crashed.ensure_group()
    sink = RedisStreamSink(client, stream, max_len=1000)
    await patient_relay(engine, [sink], clock=FakeClock()).run_once()

    taken = await crashed.read()  # read, then the worker dies without XACK
    assert [entry.event_id for entry in taken] == [event.event_id]
    assert await survivor.read() == []
    claimed = await survivor.claim_stale(min_idle_ms=0)

    assert [entry.event_id for entry in claimed] == [event.event_id]
    assert await survivor.ack(*claimed) == 1
    assert (await client.xpending(stream, "billing"))["pending"] == 0


async def test_the_stream_entry_has_the_documented_fields(
    engine: AsyncEngine, client: redis.Redis, redis_prefix: str
) -> None:
    stream = f"{redis_prefix}events"
    event = await add_event(engine, "pay_a", "payment.created")
    await patient_relay(engine, [RedisStreamSink(client, stream)], clock=FakeClock()).run_once()

    entries = await client.xrange(stream)
    assert entries is not None
    [(_, fields)] = entries
    assert fields == {
        "id": event.event_id,
        "type": "payment.created",
        "payment_id": "pay_a",
        "envelope": event.envelope,
    }


OUTBOX_EVENT = OutboxEvent(
    seq=1, event_id="e1", payment_id="pay_1", type="payment.created", envelope="{}"
)


async def test_redis_down_is_the_sinks_outage_not_a_refused_event() -> None:
    # Nobody listens on the port: the relay must hear an outage (never a dead letter).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A refused connect comes back at once; the bound is for a hang only (at 1 s a loaded
    # machine's pause made it a TimeoutError, not the refusal).
    client = redis.Redis(port=port, socket_connect_timeout=10)
    try:
        sink = RedisStreamSink(client, "s")
        with pytest.raises(SinkUnreachable, match=r"^redis: ConnectionError$"):
            await sink.deliver_many([OUTBOX_EVENT])
        with pytest.raises(SinkUnreachable, match=r"^redis: ConnectionError$"):
            await sink.deliver(OUTBOX_EVENT)
    finally:
        await client.aclose()


def test_a_stream_sink_needs_a_name_and_a_sane_max_len() -> None:
    client = redis.Redis()
    with pytest.raises(ValueError, match="stream name"):
        RedisStreamSink(client, "")
    with pytest.raises(ValueError, match="max_len"):
        RedisStreamSink(client, "s", max_len=0)
    sink = RedisStreamSink(client, "s", event_types=frozenset({"payment.completed"}))
    assert sink.name == "redis"
    assert sink.accepts("payment.completed")
    assert not sink.accepts("payment.created")


async def test_a_batch_goes_to_the_stream_in_one_pipeline_in_order(
    engine: AsyncEngine, client: redis.Redis, redis_prefix: str
) -> None:
    stream = f"{redis_prefix}batch"
    written = [await add_event(engine, f"pay_{n}", occurrence=str(n)) for n in range(5)]
    sink = RedisStreamSink(client, stream)

    outcomes = await sink.deliver_many(written)

    assert outcomes == [None] * 5
    reader = StreamConsumer(client, stream, "audit", "reader")
    await reader.ensure_group()
    entries = await reader.read(count=10)
    assert [entry.event_id for entry in entries] == [event.event_id for event in written]
    assert [entry.envelope for entry in entries] == [event.envelope for event in written]


async def test_a_batch_redis_refuses_reports_an_error_per_event_and_is_retried(
    engine: AsyncEngine, client: redis.Redis, redis_prefix: str
) -> None:
    stream = f"{redis_prefix}not-a-stream"
    await client.set(stream, "a string: XADD gets WRONGTYPE")
    for n in range(3):
        await add_event(engine, f"pay_{n}", occurrence=str(n))

    stats = await patient_relay(
        engine, [RedisStreamSink(client, stream)], clock=FakeClock()
    ).run_once()

    assert (stats.delivered, stats.retried) == (0, 3)
