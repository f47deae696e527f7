"""The events API: list lifecycle events, see one payment's events and their deliveries per
sink, redeliver an event (merchant scope); list and replay dead letters (admin scope).

Routes call the use cases of ``service/events.py`` with the container's ``EventStore``; the
router is included before the payments router, whose ``/payments/v2/{payment_id}`` would
otherwise take ``/payments/v2/events``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from paytabs_guard.domain.events import EVENT_TYPES
from paytabs_guard.entrypoints.health_checks import by_position, configured_sinks, event_store
from paytabs_guard.observability import get_logger, redact_card_numbers
from paytabs_guard.service import events as use_cases
from paytabs_guard.service.events import (
    MAX_EVENT_PAGE,
    EventNotFound,
    NoSuchSink,
    NothingToRedeliver,
    SinkNotConfigured,
    SinkStillConfigured,
    UnknownCursor,
)

from .cursors import decode_number_cursor, encode_cursor, invalid_cursor
from .dependencies import AdminDep, ClientDep, ContainerDep
from .errors import shown_cut, shown_id
from .event_schemas import (
    EVENT_TYPE_SCHEMA,
    DeadLetterListOut,
    DeadLetterOut,
    DropSinkIn,
    DropSinkOut,
    EventListOut,
    EventOut,
    EventWithDeliveriesOut,
    PaymentEventsOut,
    RedeliverIn,
    RedeliverOut,
    ReplayIn,
    ReplayOut,
    UnconfiguredSinkOut,
    UnconfiguredSinksOut,
)
from .problems import Problem
from .schemas import PROBLEM_RESPONSE
from .strict_query import STRICT_QUERY

log = get_logger(__name__)
router = APIRouter(prefix="/payments/v2", tags=["events"], dependencies=STRICT_QUERY)
_PROBLEM = PROBLEM_RESPONSE
_NAME = Query(min_length=1, max_length=200)


def _known_types(types: Sequence[str], where: str = "query") -> None:
    """A 422 naming a filter type no event has: a typo (``payment.complete``) would otherwise
    answer an empty feed, which reads as "nothing happened"."""
    unknown = [name for name in dict.fromkeys(types) if name not in EVENT_TYPES]
    if not unknown:
        return
    known = ", ".join(sorted(EVENT_TYPES))
    raise RequestValidationError(
        [
            {
                "type": "enum",
                "loc": (where, "type"),
                # Cut before the card-number search, which costs ~11 us a character.
                "msg": f"Unknown event type {shown_cut(name, 40)!r}; the types are: {known}",
                "input": None,
            }
            for name in unknown
        ]
    )


def _event_not_found(error: EventNotFound) -> Problem:
    return Problem(
        "event_not_found",
        "Event not found",
        404,
        f"There is no event {shown_id(error.event_id)}; take the id from GET /payments/v2/events.",
    )


@router.get(
    "/events",
    response_model=EventListOut,
    summary="List lifecycle events, oldest first (a feed to poll with the cursor)",
    responses={400: _PROBLEM, 401: _PROBLEM, 422: _PROBLEM},
)
async def list_events(
    container: ContainerDep,
    _client: ClientDep,
    type: Annotated[
        list[Annotated[str, EVENT_TYPE_SCHEMA]] | None,
        Query(description="Event type; repeat for several", max_length=20),
    ] = None,
    payment_id: Annotated[str | None, _NAME] = None,
    cursor: Annotated[str | None, Query(max_length=200, json_schema_extra={"minLength": 1})] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENT_PAGE)] = 50,
) -> EventListOut:
    _known_types(type or ())
    try:
        page = await use_cases.list_events(
            event_store(container),
            types=type or (),
            payment_id=payment_id,
            after=decode_number_cursor("seq", cursor),
            limit=limit,
        )
    except UnknownCursor:
        raise invalid_cursor() from None
    return EventListOut(
        data=[EventOut.of(event) for event in page.events],
        next_cursor=encode_cursor("seq", page.next_after),
        has_more=page.has_more,
    )


@router.get(
    "/events/dead-letters",
    response_model=DeadLetterListOut,
    summary="Deliveries that failed every attempt (admin)",
    responses={400: _PROBLEM, 401: _PROBLEM, 403: _PROBLEM, 422: _PROBLEM},
)
async def dead_letters(
    container: ContainerDep,
    _admin: AdminDep,
    sink: Annotated[str | None, _NAME] = None,
    type: Annotated[str | None, EVENT_TYPE_SCHEMA, _NAME] = None,
    cursor: Annotated[str | None, Query(max_length=200, json_schema_extra={"minLength": 1})] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENT_PAGE)] = 50,
) -> DeadLetterListOut:
    _known_types([type] if type else ())
    page = await use_cases.list_dead_letters(
        event_store(container),
        sink=by_position(container, sink),
        event_type=type,
        after=decode_number_cursor("dead", cursor),
        limit=limit,
    )
    return DeadLetterListOut(
        data=[DeadLetterOut.of(letter) for letter in page.letters],
        next_cursor=encode_cursor("dead", page.next_after),
        has_more=page.next_after is not None,
    )


@router.post(
    "/events/dead-letters/replay",
    response_model=ReplayOut,
    summary="Send dead letters again, by id or by sink and type (admin)",
    responses={401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM},
)
async def replay(body: ReplayIn, container: ContainerDep, _admin: AdminDep) -> ReplayOut:
    """Only letters to a sink configured now go back to pending: naming a sink that is not
    (or ids of its letters) is a 409 `sink-not-configured`; a replay by type leaves them."""
    _known_types([body.type] if body.type else (), "body")
    try:
        count = await use_cases.replay_dead_letters(
            event_store(container),
            ids=body.ids,
            sink=by_position(container, body.sink),
            event_type=body.type,
            configured=configured_sinks(container),
        )
    except SinkNotConfigured as error:
        raise _sink_not_configured(error) from error
    except ValueError as error:
        raise Problem(
            "invalid_request",
            "Invalid request",
            422,
            f"{error}. Send ids (from GET /payments/v2/events/dead-letters), a sink, or a type.",
        ) from error
    container.relay.notify()
    return ReplayOut(replayed=count)


@router.get(
    "/events/unconfigured-sinks",
    response_model=UnconfiguredSinksOut,
    summary="Sinks no longer configured that still have deliveries (admin)",
    responses={401: _PROBLEM, 403: _PROBLEM},
)
async def unconfigured_sinks(container: ContainerDep, _admin: AdminDep) -> UnconfiguredSinksOut:
    """A sink taken out of the configuration (a URL removed from `EVENTS_WEBHOOK_URLS`)
    keeps its pending deliveries and dead letters, and nothing sends them: drop them with
    `POST /payments/v2/events/unconfigured-sinks/drop`, or configure the sink again."""
    found = await use_cases.unconfigured_sinks(event_store(container), configured_sinks(container))
    return UnconfiguredSinksOut(
        data=[UnconfiguredSinkOut(sink=x.sink, pending=x.pending, dead=x.dead) for x in found]
    )


@router.post(
    "/events/unconfigured-sinks/drop",
    response_model=DropSinkOut,
    summary="Delete the pending and dead deliveries of a sink no longer configured (admin)",
    responses={401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM},
)
async def drop_unconfigured_sink(
    body: DropSinkIn, container: ContainerDep, _admin: AdminDep
) -> DropSinkOut:
    """Its delivered rows stay (the events' history); the events stay in the outbox, and the
    feed (`GET /payments/v2/events`) still has them. A sink configured now is a 409
    `sink-configured`: its deliveries are on their way; so is `webhook:N` while there is an
    N-th URL (the name it had before sinks were named by URL). Give every instance the same
    sinks: an instance that still has the sink would be sending them."""
    try:
        # ``webhook:N`` names the N-th URL in every request: rows an older instance wrote under
        # it during a rolling upgrade are that URL's deliveries, not a removed sink's.
        dropped = await use_cases.drop_unconfigured_sink(
            event_store(container), by_position(container, body.sink), configured_sinks(container)
        )
    except SinkStillConfigured as error:
        raise Problem(
            "sink_configured",
            "Sink configured",
            409,
            f"{redact_card_numbers(str(error))}. Only a sink no longer configured (see GET "
            "/payments/v2/events/unconfigured-sinks) can have its deliveries dropped.",
        ) from error
    log.warning(
        "deliveries of an unconfigured sink dropped",
        sink=redact_card_numbers(body.sink),
        dropped=dropped,
    )
    # The name as sent, but never a card number (no sink is named so: nothing was dropped).
    return DropSinkOut(sink=redact_card_numbers(body.sink), dropped=dropped)


@router.get(
    "/events/{event_id}",
    response_model=EventWithDeliveriesOut,
    summary="One event with its deliveries per sink",
    responses={401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def read_event(
    event_id: str, container: ContainerDep, _client: ClientDep
) -> EventWithDeliveriesOut:
    try:
        found = await use_cases.get_event(event_store(container), event_id)
    except EventNotFound as error:
        raise _event_not_found(error) from error
    return EventWithDeliveriesOut.of_deliveries(found)


@router.post(
    "/events/{event_id}/redeliver",
    status_code=202,
    response_model=RedeliverOut,
    summary="Send an event again to the sinks that got it (or gave up on it)",
    responses={401: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM},
)
async def redeliver(
    event_id: str,
    container: ContainerDep,
    _client: ClientDep,
    body: RedeliverIn | None = None,
) -> RedeliverOut:
    """202: the relay sends it again shortly (in order with the payment's pending events).
    A sink no longer configured is a 409 `sink-not-configured` (nothing would send to it);
    without `sinks`, the event goes again to its configured sinks only."""
    try:
        sinks = await use_cases.redeliver_event(
            event_store(container),
            event_id,
            [by_position(container, sink) for sink in (body or RedeliverIn()).sinks or []],
            configured=configured_sinks(container),
        )
    except SinkNotConfigured as error:
        raise _sink_not_configured(error) from error
    except EventNotFound as error:
        raise _event_not_found(error) from error
    except NoSuchSink as error:
        raise Problem(
            "invalid_request",
            "Invalid request",
            422,
            # The reason names the sinks as sent: a card number there is not repeated.
            f"sinks: {redact_card_numbers(error.reason)}. Name sinks from the event's "
            "deliveries, or leave sinks out.",
            extensions={"field": "sinks"},
        ) from error
    except NothingToRedeliver as error:
        raise Problem(
            "nothing_to_redeliver",
            "Nothing to redeliver",
            409,
            f"{error.reason}. Redeliver once a delivery has been made or has become a dead "
            "letter (see deliveries in GET /payments/v2/events/{id}).",
        ) from error
    container.relay.notify()
    return RedeliverOut(event_id=event_id, sinks=list(sinks))


@router.get(
    "/{payment_id}/events",
    response_model=PaymentEventsOut,
    summary="A payment's events with each one's deliveries per sink",
    responses={401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def payment_events(
    payment_id: str, container: ContainerDep, _client: ClientDep
) -> PaymentEventsOut:
    found = await use_cases.payment_events(container.payments, event_store(container), payment_id)
    return PaymentEventsOut(
        payment_id=payment_id,
        data=[EventWithDeliveriesOut.of_deliveries(item) for item in found],
    )


def _sink_not_configured(error: SinkNotConfigured) -> Problem:
    return Problem(
        "sink_not_configured",
        "Sink not configured",
        409,
        # The sinks as sent (or as stored): a card number there is not repeated.
        f"{redact_card_numbers(error.reason)}.",
        extensions={"sinks": [redact_card_numbers(sink) for sink in error.sinks]},
    )
