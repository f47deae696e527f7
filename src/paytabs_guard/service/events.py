"""Read and re-send lifecycle events: the events API's use cases (docs/events.md).

Events are the outbox rows written with each state change; a *delivery* is one event's progress
towards one sink (an in-process subscriber, the Redis stream, a merchant webhook endpoint).
Storage answers through the ``EventStore`` port (``adapters/events/store.py``); these functions
hold the rules: page sizes, what "not found" means, which deliveries may be sent again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from paytabs_guard.service.payment_steps import PaymentDeps, get_payment

MAX_EVENT_PAGE: Final = 100
MAX_PAYMENT_EVENTS: Final = 1000
MAX_REPLAY_IDS: Final = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one event stands with one sink."""

    id: int
    sink: str
    status: str  # pending, delivered or dead
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    dead_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One outbox event: ``envelope`` is the CloudEvents JSON exactly as the sinks receive it.
    ``fanned_out_at`` is None until the relay has made its deliveries."""

    seq: int
    id: str
    type: str
    payment_id: str
    created_at: datetime
    fanned_out_at: datetime | None
    envelope: str


@dataclass(frozen=True, slots=True)
class EventWithDeliveries:
    event: StoredEvent
    deliveries: Sequence[Delivery]


@dataclass(frozen=True, slots=True)
class EventPage:
    """Oldest first; ``next_after`` is the ``seq`` to continue after, ``has_more`` whether
    events after this page exist already (when False, ask again later with the same cursor)."""

    events: Sequence[StoredEvent]
    next_after: int | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A delivery that failed every attempt, with its event's identity."""

    delivery: Delivery
    event_id: str
    event_type: str
    payment_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    letters: Sequence[DeadLetterEntry]
    next_after: int | None  # delivery id to continue after


@dataclass(frozen=True, slots=True)
class LeftDeliveries:
    """Deliveries left to a sink that is no longer configured: nothing sends them."""

    sink: str
    pending: int
    dead: int


class EventStore(Protocol):
    """Events and their deliveries, as stored by the outbox relay."""

    async def events(
        self, *, types: Collection[str], payment_id: str | None, after: int | None, limit: int
    ) -> Sequence[StoredEvent]:
        """The feed: events after the cursor ``after``, filtered by type and payment, in an
        order no later commit can slip in front of (on PostgreSQL an event waits until every
        transaction older than its own has ended)."""
        ...

    async def payment_events(self, payment_id: str, *, limit: int) -> Sequence[StoredEvent]:
        """One payment's events in the order they happened, each as soon as it is committed
        (no cursor is given out, so nothing needs holding back)."""
        ...

    async def event(self, event_id: str) -> StoredEvent | None: ...

    async def has_seq(self, seq: int) -> bool:
        """Whether an event has position ``seq`` in the feed (a cursor the feed gave out)."""
        ...

    async def deliveries(self, event_ids: Collection[str]) -> Mapping[str, Sequence[Delivery]]:
        """Each event's deliveries, by sink name."""
        ...

    async def redeliver(self, event_id: str, sinks: Collection[str]) -> Sequence[str]:
        """Put the event's delivered or dead deliveries (to ``sinks``, or all when empty) back
        to pending, due now; return the sinks that will get it again."""
        ...

    async def dead_letters(
        self, *, sink: str | None, event_type: str | None, after: int | None, limit: int
    ) -> Sequence[DeadLetterEntry]: ...

    async def replay_dead_letters(
        self,
        *,
        ids: Collection[int],
        sink: str | None,
        event_type: str | None,
        sinks: Collection[str] | None = None,
    ) -> int:
        """Dead deliveries (by id, or every one matching the filters) back to pending; with
        ``sinks``, only those to one of them."""
        ...

    async def dead_letter_sinks(self, ids: Collection[int]) -> set[str]:
        """The sinks of the dead letters among ``ids``."""
        ...

    async def left_deliveries(self, configured: Collection[str]) -> Sequence[LeftDeliveries]:
        """Per sink not in ``configured``: its pending and dead deliveries (sinks with none
        are not listed), by sink name."""
        ...

    async def drop_deliveries(self, sink: str) -> int:
        """Delete the sink's pending and dead deliveries (delivered ones stay, as history)."""
        ...

    async def adopt_position_names(self) -> int | None:
        """Move the deliveries an instance of a version before the sinks were named by URL
        wrote under a position (``webhook:N``) to the sink recorded for that position;
        how many moved, None when none was recorded."""
        ...


class UnknownCursor(LookupError):
    """A feed cursor that names no event."""


class EventNotFound(LookupError):
    """No event has this id."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"no event {event_id!r}")
        self.event_id = event_id


class NothingToRedeliver(Exception):
    """Every delivery of the event is still on its way (or it has none yet)."""

    def __init__(self, event_id: str, reason: str) -> None:
        super().__init__(reason)
        self.event_id = event_id
        self.reason = reason


class NoSuchSink(NothingToRedeliver):
    """A sink asked for that the event was never handed to: the request names a wrong one."""


class SinkNotConfigured(Exception):
    """A redelivery or replay to a sink this service no longer has (a webhook URL removed from
    the configuration): the relay would never send it, so it is refused, not queued."""

    def __init__(self, sinks: Collection[str], reason: str) -> None:
        super().__init__(reason)
        self.sinks = sorted(sinks)
        self.reason = reason


class SinkStillConfigured(Exception):
    """A drop of the deliveries of a sink the service still has: the relay is sending them."""

    def __init__(self, sink: str) -> None:
        super().__init__(f"the sink {sink} is configured: its deliveries are being sent")
        self.sink = sink


def _not_configured(sinks: Collection[str]) -> SinkNotConfigured:
    names = ", ".join(sorted(sinks))
    plural = len(sinks) > 1
    return SinkNotConfigured(
        sinks,
        f"{'the sinks' if plural else 'the sink'} {names} {'are' if plural else 'is'} no longer "
        "configured: nothing would send to "
        f"{'them' if plural else 'it'}. Configure {'them' if plural else 'it'} again, or drop "
        "the deliveries left to it with POST /payments/v2/events/unconfigured-sinks/drop",
    )


def _check_limit(limit: int, ceiling: int) -> None:
    if not 1 <= limit <= ceiling:
        raise ValueError(f"limit must be 1 to {ceiling}, got {limit}")


async def list_events(
    store: EventStore,
    *,
    types: Collection[str] = (),
    payment_id: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> EventPage:
    """A page of events, oldest first (a feed: keep the cursor and ask again for newer ones).

    The last page also carries a cursor, so a poller continues where it stopped; ``next_after``
    is None only when nothing matched and no cursor was given."""
    _check_limit(limit, MAX_EVENT_PAGE)
    found = await store.events(types=types, payment_id=payment_id, after=after, limit=limit + 1)
    if not found and after is not None and not await store.has_seq(after):
        # Every cursor the feed gives out names an event (none is ever deleted). One that names
        # none (made up, or kept across a restore of an older database) read as "nothing new"
        # for ever; asked only for an empty page, so polling costs nothing more.
        raise UnknownCursor(after)
    page = list(found[:limit])
    next_after = page[-1].seq if page else after
    return EventPage(page, next_after, has_more=len(found) > limit)


async def get_event(store: EventStore, event_id: str) -> EventWithDeliveries:
    event = await store.event(event_id)
    if event is None:
        raise EventNotFound(event_id)
    deliveries = await store.deliveries([event_id])
    return EventWithDeliveries(event, deliveries.get(event_id, ()))


async def payment_events(
    deps: PaymentDeps, store: EventStore, payment_id: str
) -> list[EventWithDeliveries]:
    """Every event of one payment, oldest first, each with its deliveries per sink. Raises
    ``PaymentNotFound`` for a payment that does not exist (not an empty list)."""
    await get_payment(deps, payment_id)
    events = await store.payment_events(payment_id, limit=MAX_PAYMENT_EVENTS)
    deliveries = await store.deliveries([event.id for event in events])
    return [EventWithDeliveries(event, deliveries.get(event.id, ())) for event in events]


async def redeliver_event(
    store: EventStore,
    event_id: str,
    sinks: Collection[str] = (),
    *,
    configured: Collection[str] | None = None,
) -> Sequence[str]:
    """Send an event again to the sinks that already got it (or gave up on it).

    Deliveries still pending are left alone: they are on their way. Consumers dedupe on the
    event id, so a redelivery is harmless to one that already processed it. With
    ``configured`` (the relay's sinks now), a sink asked for that is not among them is
    refused (``SinkNotConfigured``), and "every sink" means every configured one."""
    found = await get_event(store, event_id)
    known = {delivery.sink for delivery in found.deliveries}
    unknown = sorted(set(sinks) - known)
    if unknown:
        raise NoSuchSink(
            event_id,
            f"the event has no delivery to {', '.join(unknown)}; its sinks are: "
            f"{', '.join(sorted(known)) or 'none yet'}",
        )
    if configured is not None:
        gone = (set(sinks) or known) - set(configured)
        if gone and (sinks or gone == known):  # named, or no configured sink is left
            raise _not_configured(gone)
        if gone:
            sinks = sorted(known - gone)
    redelivered = await store.redeliver(event_id, sinks)
    if not redelivered:
        asked = sorted(set(sinks))
        if not found.deliveries:
            reason = "the event has not been handed to any sink yet: the relay will send it"
        elif asked:  # the others may well have been made: name only the ones asked for
            plural = "ies" if len(asked) > 1 else "y"
            verb = "are" if len(asked) > 1 else "is"
            reason = (
                f"the deliver{plural} to {', '.join(asked)} {verb} still pending: "
                "the relay is sending it"
            )
        else:
            reason = "every delivery of the event is still pending: the relay is sending it"
        raise NothingToRedeliver(event_id, reason)
    return redelivered


async def list_dead_letters(
    store: EventStore,
    *,
    sink: str | None = None,
    event_type: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> DeadLetterPage:
    """Dead deliveries in delivery-id order; ``next_after`` is None on the last page."""
    _check_limit(limit, MAX_EVENT_PAGE)
    found = list(
        await store.dead_letters(sink=sink, event_type=event_type, after=after, limit=limit + 1)
    )
    page = found[:limit]
    more = len(found) > limit
    return DeadLetterPage(page, page[-1].delivery.id if more and page else None)


async def replay_dead_letters(
    store: EventStore,
    *,
    ids: Collection[int] = (),
    sink: str | None = None,
    event_type: str | None = None,
    configured: Collection[str] | None = None,
    skip_unconfigured: bool = False,
) -> int:
    """Send dead letters again: the listed ids, or all matching ``sink``/``event_type``.
    Ids that are not (or no longer) dead are skipped, so replaying twice is harmless.

    With ``configured`` (the relay's sinks now) only letters to those sinks go back to
    pending: nothing would send the others. Naming a sink that is not configured, or ids of
    its letters, raises ``SinkNotConfigured`` (with ``skip_unconfigured``, such ids are left
    out instead: the console's "replay this page")."""
    if len(ids) > MAX_REPLAY_IDS:
        raise ValueError(f"at most {MAX_REPLAY_IDS} ids at once, got {len(ids)}")
    if not ids and sink is None and event_type is None:
        raise ValueError("Name the dead letters to replay")
    if configured is not None:
        if sink is not None and sink not in configured:
            raise _not_configured([sink])
        if ids and not skip_unconfigured:
            gone = await store.dead_letter_sinks(ids) - set(configured)
            if gone:
                raise _not_configured(gone)
    return await store.replay_dead_letters(
        ids=ids, sink=sink, event_type=event_type, sinks=configured
    )


async def unconfigured_sinks(
    store: EventStore, configured: Collection[str]
) -> Sequence[LeftDeliveries]:
    """The sinks not in ``configured`` that still have pending or dead deliveries. What an
    older instance wrote by position during a rolling upgrade goes to its URL's sink first:
    it is not left, and listed as left it would be dropped."""
    await store.adopt_position_names()
    return await store.left_deliveries(configured)


async def drop_unconfigured_sink(store: EventStore, sink: str, configured: Collection[str]) -> int:
    """Delete the pending and dead deliveries of a sink no longer configured; return how many.
    A configured sink is refused (``SinkStillConfigured``): its deliveries are on their way.
    Deliveries written by position go to their URL's sink first, never with the drop."""
    if sink in configured:
        raise SinkStillConfigured(sink)
    await store.adopt_position_names()
    return await store.drop_deliveries(sink)
