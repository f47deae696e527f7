"""The service's webhook sinks, named by URL, and the position names they had before.

``bootstrap`` names the sink of each URL of EVENTS_WEBHOOK_URLS ``webhook:<endpoint name>``
(``outgoing_webhooks.endpoint_name``: a hash of the normalised URL), so removing or reordering
URLs moves no URL's deliveries to another. Up to migration 0013 they were ``webhook:N``, the
N-th URL; the migration moved the stored rows and recorded which position was which URL's in
``webhook_sink_aliases``. ``adopt_position_names`` moves the rows an instance of the older
version wrote under a position since (a rolling upgrade) by that record, never by the list
as it is now, which may have changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import httpx
from pydantic import SecretStr
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.engine import write_transaction
from paytabs_guard.resilience.clock import utc_now

from .outgoing_webhooks import (
    SINK_PREFIX,
    WebhookEndpoint,
    WebhookSink,
    endpoint_name,
    webhook_sinks,
)
from .tables import DEAD, PENDING, event_deliveries, has_status, webhook_sink_aliases


def sink_names(urls: Sequence[str]) -> list[str]:
    """The sink name of each URL, in the list's order."""
    return [SINK_PREFIX + endpoint_name(url) for url in urls]


def url_sinks(
    urls: Sequence[str],
    secrets: tuple[SecretStr, ...],
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> list[WebhookSink]:
    """The service's sink of each URL, named by the URL, not its position: taking a URL out
    of the list leaves the others' names, and their deliveries, where they are. A URL listed
    twice is refused (it would get every event twice under one name)."""
    names = sink_names(urls)
    twice = sorted({n for n, name in enumerate(names, start=1) if names.count(name) > 1})
    if twice:
        raise ValueError(
            "EVENTS_WEBHOOK_URLS lists the same URL more than once (positions "
            f"{', '.join(map(str, twice))})"
        )
    endpoints = [WebhookEndpoint(endpoint_name(url), url, secrets) for url in urls]
    return webhook_sinks(endpoints, http, clock=clock)


def position_aliases(urls: Sequence[str]) -> dict[str, str]:
    """``webhook:N`` (the older name of the N-th URL's sink) to the sink's name now."""
    return {f"{SINK_PREFIX}{n}": name for n, name in enumerate(sink_names(urls), start=1)}


async def adopt_position_names(engine: AsyncEngine) -> int | None:
    """Move pending and dead deliveries still under a position name to the sink the upgrade
    recorded for that position; returns how many moved, None when no position was recorded
    (nothing will ever be written by one). One read of the small alias table, then per
    recorded position one update through the pending and dead rows' indexes."""
    d = event_deliveries
    taken = event_deliveries.alias("taken")
    moved = 0
    async with write_transaction(engine) as connection:
        aliases = (await connection.execute(select(webhook_sink_aliases))).all()
        if not aliases:
            return None
        for alias, sink in aliases:
            statement = (
                update(d)
                .where(
                    d.c.sink == alias,
                    or_(has_status(d.c.status, PENDING), has_status(d.c.status, DEAD)),
                    ~exists().where(and_(taken.c.event_id == d.c.event_id, taken.c.sink == sink)),
                )
                .values(sink=sink)
            )
            moved += (await connection.execute(statement)).rowcount
    return moved
