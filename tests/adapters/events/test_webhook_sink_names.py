"""The service's webhook sinks are named by URL (migration 0013 and the start-up adoption of
rows an older instance still writes by position), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.events.cloudevents import OutboxEvent
from paytabs_guard.adapters.events.outgoing_webhooks import endpoint_name
from paytabs_guard.adapters.events.tables import event_deliveries
from paytabs_guard.adapters.events.webhook_aliases import (
    adopt_position_names,
    position_aliases,
    sink_names,
)
from paytabs_guard.adapters.sql.migrate import downgrade, upgrade
from testkit.clock import START

from .events_support import add_event, delivery_counts, open_engine

pytestmark = pytest.mark.anyio

SHOP = "https://shop.example/hooks?token=s3cr3t-shop"
ERP = "https://erp.example/events"


def test_an_endpoint_is_named_by_its_normalised_url_and_never_shows_it() -> None:
    name = endpoint_name(SHOP)
    assert len(name) == 12
    assert int(name, 16) >= 0
    assert "s3cr3t" not in name
    assert "shop" not in name
    assert endpoint_name("HTTPS://Shop.Example:443/hooks?token=s3cr3t-shop#part") == name
    assert endpoint_name("https://shop.example/hooks?token=other") != name
    assert endpoint_name("http://shop.example") == endpoint_name("http://shop.example:80/")
    assert endpoint_name("https://shop.example:8443/hooks?token=s3cr3t-shop") != name
    assert position_aliases([SHOP, ERP]) == {
        "webhook:1": "webhook:" + name,
        "webhook:2": "webhook:" + endpoint_name(ERP),
    }


async def deliveries(engine: AsyncEngine, event: OutboxEvent, **by_sink: str) -> None:
    """Delivery rows of ``event`` as the older version wrote them, ``sink=status``."""
    rows = [
        {
            "seq": event.seq,
            "event_id": event.event_id,
            "payment_id": event.payment_id,
            "type": event.type,
            "sink": sink.replace("_", ":"),
            "status": status,
            "attempts": 0,
            "next_attempt_at": START,
            "created_at": START,
        }
        for sink, status in by_sink.items()
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(event_deliveries), rows)


def of(counts: Counter[tuple[str, str, str]], event: OutboxEvent) -> dict[str, str]:
    return {sink: status for (event_id, sink, status) in counts if event_id == event.event_id}


async def test_position_names_move_to_the_urls_they_had_at_the_upgrade(database_url: str) -> None:
    await upgrade(database_url, "0012_saved_card_refusals")
    shop, erp = sink_names([SHOP, ERP])
    engine = open_engine(database_url)
    try:
        before = await add_event(engine, "pay_before")
        await deliveries(
            engine,
            before,
            webhook_1="delivered",
            webhook_2="pending",
            webhook_3="dead",  # a URL already taken out before the upgrade
            redis="delivered",
        )
        await upgrade(database_url, webhook_aliases=position_aliases([SHOP, ERP]))
        assert of(await delivery_counts(engine), before) == {
            shop: "delivered",
            erp: "pending",
            "webhook:3": "dead",  # no position 3 any more: a sink no longer configured
            "redis": "delivered",
        }

        # An instance of the older version, still running (a rolling upgrade), writes by
        # position: a start moves its pending and dead rows by what the upgrade recorded,
        # whatever the list is now (SHOP may have been removed since).
        during = await add_event(engine, "pay_during")
        await deliveries(engine, during, webhook_1="pending", webhook_2="dead")
        await upgrade(database_url, webhook_aliases=position_aliases([ERP]))  # a no-op now
        assert await adopt_position_names(engine) == 2
        assert of(await delivery_counts(engine), during) == {shop: "pending", erp: "dead"}
        assert await adopt_position_names(engine) == 0

        await downgrade(database_url, "0012_saved_card_refusals")
        assert of(await delivery_counts(engine), before) == {
            "webhook:1": "delivered",
            "webhook:2": "pending",
            "webhook:3": "dead",
            "redis": "delivered",
        }
    finally:
        await engine.dispose()
