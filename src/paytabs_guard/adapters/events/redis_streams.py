"""Redis Streams: the broker other services consume our events from, with consumer groups.

Each event becomes one stream entry (``XADD <stream> MAXLEN ~ <n> * id … type … payment_id …
envelope …``). Consumers read through a consumer group (``XREADGROUP``), so every entry goes to
one consumer of the group, and acknowledge it (``XACK``) once handled; an entry a crashed
consumer never acknowledged is taken over with ``XAUTOCLAIM``. Delivery into the stream is at
least once: dedupe on ``id`` (the CloudEvents id), never on the stream entry id.

``MAXLEN ~`` trims the stream approximately: an entry older than the newest ``max_len`` is gone
even when a slow group has not read it yet, so size it above the largest backlog you accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import redis.asyncio as redis
from redis.typing import EncodableT, FieldT

from .cloudevents import CloudEvent, OutboxEvent
from .sinks import SinkUnreachable

SINK_NAME: Final = "redis"
DEFAULT_MAX_LEN: Final = 100_000


class RedisStreamSink:
    """Publishes events to one stream (sink name ``redis``); ``event_types`` empty = all."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        *,
        max_len: int | None = DEFAULT_MAX_LEN,
        name: str = SINK_NAME,
        event_types: frozenset[str] = frozenset(),
    ) -> None:
        if not stream:
            raise ValueError("the stream name must not be empty")
        if max_len is not None and max_len < 1:
            raise ValueError("max_len must be positive, or None for no trimming")
        self._client = client
        self._stream = stream
        self._max_len = max_len
        self._name = name
        self._event_types = event_types

    @property
    def name(self) -> str:
        return self._name

    @property
    def stream(self) -> str:
        return self._stream

    def accepts(self, event_type: str) -> bool:
        return not self._event_types or event_type in self._event_types

    @property
    def accepted_types(self) -> frozenset[str] | None:
        return self._event_types or None

    async def deliver(self, event: OutboxEvent) -> None:
        try:
            await self._client.xadd(
                self._stream, _fields_of(event), maxlen=self._max_len, approximate=True
            )
        except _UNREACHABLE as error:
            raise SinkUnreachable(f"{self.name}: {type(error).__name__}") from error

    async def deliver_many(self, events: Sequence[OutboxEvent]) -> list[Exception | None]:
        """Every XADD in one pipeline (one round trip, no MULTI): an entry per event, in order;
        per event None, or the error Redis gave for that one."""
        if not events:
            return []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(
                        self._stream, _fields_of(event), maxlen=self._max_len, approximate=True
                    )
                replies = await pipe.execute(raise_on_error=False)
        except _UNREACHABLE as error:
            raise SinkUnreachable(f"{self.name}: {type(error).__name__}") from error
        return [reply if isinstance(reply, Exception) else None for reply in replies]


#: Redis could not be reached or did not answer: its outage, not a refusal of an event.
_UNREACHABLE: Final = (redis.ConnectionError, redis.TimeoutError, OSError)


def _fields_of(event: OutboxEvent) -> dict[FieldT, EncodableT]:
    return {
        "id": event.event_id,
        "type": event.type,
        "payment_id": event.payment_id,
        "envelope": event.envelope,
    }


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry read from the stream; ``entry_id`` is what ``XACK`` takes."""

    entry_id: str
    event_id: str
    type: str
    payment_id: str
    envelope: str

    def cloud_event(self) -> CloudEvent:
        return CloudEvent.from_json(self.envelope)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: object, fields: Mapping[object, object]) -> StreamEntry:
    values = {_text(key): _text(value) for key, value in fields.items()}
    return StreamEntry(
        entry_id=_text(entry_id),
        event_id=values.get("id", ""),
        type=values.get("type", ""),
        payment_id=values.get("payment_id", ""),
        envelope=values.get("envelope", ""),
    )


class StreamConsumer:
    """One consumer of a consumer group: how another service reads our stream.

    ``await consumer.ensure_group()`` once, then loop: ``entries = await consumer.read()``,
    handle each (idempotently, keyed by ``entry.event_id``), ``await consumer.ack(*entries)``.
    """

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._consumer = consumer

    async def ensure_group(self, *, start: str = "0") -> None:
        """Create the group (and the stream) if missing; ``start="0"``: from the first entry."""
        try:
            await self._client.xgroup_create(self._stream, self._group, id=start, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):  # the group exists already: fine
                raise

    async def read(self, *, count: int = 10, block_ms: int | None = None) -> list[StreamEntry]:
        """New entries for this consumer (``>``); ``block_ms``: wait that long for some."""
        response = await self._client.xreadgroup(
            self._group, self._consumer, {self._stream: ">"}, count=count, block=block_ms
        )
        return self._entries(response)

    async def ack(self, *entries: StreamEntry | str) -> int:
        """Acknowledge handled entries; returns how many were pending."""
        if not entries:
            return 0
        ids = [entry if isinstance(entry, str) else entry.entry_id for entry in entries]
        acknowledged: int = await self._client.xack(self._stream, self._group, *ids)
        return acknowledged

    async def claim_stale(self, *, min_idle_ms: int, count: int = 10) -> list[StreamEntry]:
        """Take over entries another consumer read but did not acknowledge for ``min_idle_ms``."""
        response = await self._client.xautoclaim(
            self._stream, self._group, self._consumer, min_idle_ms, start_id="0-0", count=count
        )
        # [next_start_id, [[entry_id, fields], ...], deleted_ids]
        claimed: Sequence[Sequence[object]] = response[1]
        return [_entry(item[0], _fields(item[1])) for item in claimed if item[1] is not None]

    def _entries(self, response: object) -> list[StreamEntry]:
        # RESP2: [[stream, [[entry_id, fields], ...]]]; RESP3: {stream: [[entry_id, fields], ...]}
        if not response:
            return []
        streams = (
            response.values()
            if isinstance(response, dict)
            else (item[1] for item in _sequence(response))
        )
        entries: list[StreamEntry] = []
        for stream_entries in streams:
            entries.extend(_entry(item[0], _fields(item[1])) for item in _sequence(stream_entries))
        return entries


def _sequence(value: object) -> Sequence[Sequence[object]]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"unexpected Redis reply: {type(value).__name__}")
    return value


def _fields(value: object) -> Mapping[object, object]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list | tuple):  # a flat [key, value, ...] list
        return dict(zip(value[::2], value[1::2], strict=True))
    raise TypeError(f"unexpected Redis stream fields: {type(value).__name__}")
