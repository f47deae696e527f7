"""Deliveries left to a sink that is no longer configured (a webhook URL taken out of
EVENTS_WEBHOOK_URLS): over real HTTP, on SQLite and PostgreSQL, with the service restarted on
the same database with fewer URLs and its clock moved forward instead of waiting."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, update

from paytabs_guard.adapters.events.outgoing_webhooks import endpoint_name
from paytabs_guard.adapters.events.tables import event_deliveries, webhook_sink_aliases
from paytabs_guard.entrypoints.background import adopt_position_names_until
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, running_service, start_up_reported
from .relay_support import drained
from .test_backlog_gauges import gauge
from .test_events_api import SECRET, Merchant, merchant_endpoint

pytestmark = pytest.mark.anyio


def sink_of(merchant: Merchant) -> str:
    """The service's sink of a merchant URL: named by the URL, wherever it is listed."""
    return "webhook:" + endpoint_name(merchant.url)


@contextlib.asynccontextmanager
async def with_urls(
    sim: RunningSimulator, database_url: str, clock: Callable[[], datetime], *urls: str
) -> AsyncIterator[Service]:
    env = {
        "EVENTS_WEBHOOK_URLS": ",".join(urls),
        "EVENTS_WEBHOOK_SECRET": SECRET,
        "EVENTS_MAX_ATTEMPTS": "2",
    }
    async with running_service(sim, database_url, env=env, clock=clock) as service:
        yield service


@contextlib.asynccontextmanager
async def stranded_second_url(
    sim: RunningSimulator, database_url: str
) -> AsyncIterator[tuple[Service, Merchant, Merchant, list[datetime]]]:
    """Two URLs, the second refusing every event (dead letters) or down, then the service
    restarted 10 minutes later with the first URL only."""
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    async with merchant_endpoint() as first, merchant_endpoint() as second:
        second.down = True
        async with with_urls(sim, database_url, lambda: now[0], first.url, second.url) as before:
            dead = await before.create()
            for _ in range(4):  # the second URL refuses each event twice: dead letters
                await before.container.relay.run_once()
                now[0] += timedelta(minutes=1)
            payment = await before.create()
            await before.container.relay.run_once()  # fanned out, one attempt: pending
        now[0] += timedelta(minutes=10)
        async with with_urls(sim, database_url, lambda: now[0], first.url) as after:
            after.created += [dead["id"], payment["id"]]
            yield after, first, second, now


async def deliveries(service: Service, sink: str, status: str) -> list[dict[str, Any]]:
    found = []
    for payment_id in service.created:
        answer = await service.api.get(f"/payments/v2/{payment_id}/events")
        for event in answer.json()["data"]:
            found += [
                {"event_id": event["id"], **delivery}
                for delivery in event["deliveries"]
                if delivery["sink"] == sink and delivery["status"] == status
            ]
    return found


async def test_a_removed_url_leaves_neither_lag_nor_dead_letters_in_health_and_gauges(
    sim: RunningSimulator, database_url: str
) -> None:
    async with stranded_second_url(sim, database_url) as (service, first, second, _now):
        gone = sink_of(second)
        assert first.url != second.url
        await drained(service)  # the old code never drained: the removed URL's rows wait
        assert await deliveries(service, gone, "pending")  # still there, untouched
        assert await deliveries(service, gone, "dead")
        assert first.received

        metrics = (await service.anonymous.get("/metrics")).text
        assert gauge(metrics, "paytabs_guard_outbox_oldest_age_seconds") == 0
        assert gauge(metrics, "paytabs_guard_outbox_pending") == 0
        assert gauge(metrics, "paytabs_guard_event_dead_letters") == 0
        health = (await service.anonymous.get("/payments/v2/health")).json()
        assert health["checks"]["outbox:lag"][0]["status"] == "pass", health


async def test_replay_and_redelivery_to_a_removed_url_are_refused_not_queued(
    sim: RunningSimulator, database_url: str
) -> None:
    async with stranded_second_url(sim, database_url) as (service, first, second, _now):
        kept, gone = sink_of(first), sink_of(second)
        await drained(service)
        listed = await service.admin.get("/payments/v2/events/dead-letters", params={"sink": gone})
        letters = listed.json()["data"]
        assert letters  # still listed: an operator sees what was left

        by_sink = await service.admin.post(
            "/payments/v2/events/dead-letters/replay", json={"sink": gone}
        )
        assert by_sink.status_code == 409, by_sink.text  # was 200 {"replayed": N}, never sent
        assert by_sink.headers["content-type"] == "application/problem+json"
        problem = by_sink.json()
        assert problem["type"].endswith("/sink-not-configured")
        assert problem["sinks"] == [gone]
        assert "no longer configured" in problem["detail"]
        by_id = await service.admin.post(
            "/payments/v2/events/dead-letters/replay", json={"ids": [letters[0]["id"]]}
        )
        assert by_id.status_code == 409, by_id.text
        by_type = await service.admin.post(
            "/payments/v2/events/dead-letters/replay", json={"type": "payment.created"}
        )
        assert by_type.json() == {"replayed": 0}  # the configured sink has none
        assert len(await deliveries(service, gone, "dead")) == len(letters)

        event_id = letters[0]["event_id"]
        named = await service.api.post(
            f"/payments/v2/events/{event_id}/redeliver", json={"sinks": [gone]}
        )
        assert named.status_code == 409, named.text  # was 202 with nothing ever sent
        assert named.json()["type"].endswith("/sink-not-configured")
        every = await service.api.post(f"/payments/v2/events/{event_id}/redeliver")
        assert every.status_code == 202, every.text
        assert every.json()["sinks"] == [kept]
        before = first.received.count(event_id)
        await drained(service)
        assert first.received.count(event_id) == before + 1
        assert len(await deliveries(service, gone, "dead")) == len(letters)


async def test_the_start_says_once_what_is_left_and_an_admin_can_drop_it(
    sim: RunningSimulator, database_url: str, captured: io.StringIO
) -> None:
    async with stranded_second_url(sim, database_url) as (service, first, second, _now):
        kept, gone = sink_of(first), sink_of(second)
        await start_up_reported()
        await drained(service)
        pending = len(await deliveries(service, gone, "pending"))
        dead = len(await deliveries(service, gone, "dead"))
        lines = [json.loads(line) for line in captured.getvalue().splitlines() if line]
        reports = [line for line in lines if "no longer configured" in line["event"]]
        assert [line["event"] for line in reports] == [
            f"{pending} deliveries pending for sinks no longer configured: "
            f"{gone} ({pending} pending, {dead} dead)"
        ]
        assert "unconfigured-sinks/drop" in reports[0]["hint"]
        named = [
            (line["sink"], line["position"], line["origin"])
            for line in lines
            if line["event"] == "webhook sink"
        ]
        # Which hash is which URL (its origin only: the path or query may hold a token), at
        # each start: two URLs, then one.
        one, two = (merchant.url.removesuffix("/hooks") for merchant in (first, second))
        assert named == [(kept, 1, one), (gone, 2, two), (kept, 1, one)]

        forbidden = await service.api.get("/payments/v2/events/unconfigured-sinks")
        assert forbidden.status_code == 403
        listed = await service.admin.get("/payments/v2/events/unconfigured-sinks")
        assert listed.json() == {"data": [{"sink": gone, "pending": pending, "dead": dead}]}

        configured = await service.admin.post(
            "/payments/v2/events/unconfigured-sinks/drop", json={"sink": kept}
        )
        assert configured.status_code == 409, configured.text
        assert configured.json()["type"].endswith("/sink-configured")
        dropped = await service.admin.post(
            "/payments/v2/events/unconfigured-sinks/drop", json={"sink": gone}
        )
        assert dropped.json() == {"sink": gone, "dropped": pending + dead}
        listed = await service.admin.get("/payments/v2/events/unconfigured-sinks")
        assert listed.json() == {"data": []}
        assert not await deliveries(service, gone, "pending")
        letters = await service.admin.get("/payments/v2/events/dead-letters")
        assert letters.json()["data"] == []
        # The configured sink lost nothing: every event reached the first URL.
        assert len(await deliveries(service, kept, "delivered")) == len(set(first.received))


async def test_removing_the_first_url_moves_no_backlog_to_the_second(
    sim: RunningSimulator, database_url: str
) -> None:
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    async with merchant_endpoint() as first, merchant_endpoint() as second:
        first.down = True
        async with with_urls(sim, database_url, lambda: now[0], first.url, second.url) as before:
            early = await before.create()
            await before.container.relay.run_once()  # the second URL takes it, the first not
            second.down = True
            late = await before.create()
            await before.container.relay.run_once()  # neither takes it
        assert second.received
        taken = list(second.received)
        first.down = second.down = False
        now[0] += timedelta(minutes=10)
        async with with_urls(sim, database_url, lambda: now[0], second.url) as after:
            after.created += [early["id"], late["id"]]
            await drained(after)
            # The second URL gets its own backlog, once: named by position, it became
            # "webhook:1" and was sent the first URL's backlog (the early payment's events
            # again) while its own pending deliveries were left to "webhook:2".
            ids = []
            for payment in (early, late):
                answer = await after.api.get(f"/payments/v2/{payment['id']}/events")
                ids += [event["id"] for event in answer.json()["data"]]
            assert sorted(second.received) == sorted(ids)
            assert len(set(second.received)) == len(second.received)
            assert second.received[: len(taken)] == taken
            # The first URL's deliveries wait under its own name, not counted as lag.
            assert await deliveries(after, sink_of(first), "pending")
            assert not first.received
            health = (await after.anonymous.get("/payments/v2/health")).json()
            assert health["checks"]["outbox:lag"][0]["status"] == "pass", health


async def test_a_sink_is_still_named_by_its_position_in_requests(
    sim: RunningSimulator, database_url: str
) -> None:
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    async with (
        merchant_endpoint() as first,
        merchant_endpoint() as second,
        with_urls(sim, database_url, lambda: now[0], first.url, second.url) as service,
    ):
        payment = await service.create()
        await drained(service)
        events = (await service.api.get(f"/payments/v2/{payment['id']}/events")).json()
        event = events["data"][0]
        names = sorted(delivery["sink"] for delivery in event["deliveries"])
        assert names == sorted([sink_of(first), sink_of(second)])
        again = await service.api.post(
            f"/payments/v2/events/{event['id']}/redeliver", json={"sinks": ["webhook:2"]}
        )
        assert again.status_code == 202, again.text
        assert again.json()["sinks"] == [sink_of(second)]
        await drained(service)
        assert second.received.count(event["id"]) == 2
        assert first.received.count(event["id"]) == 1


async def written_by_position(service: Service, sink: str, position: str) -> int:
    """Name ``sink``'s pending deliveries by position, as an instance of the version before
    sinks were named by URL writes them during a rolling upgrade; how many."""
    async with service.container.engine.begin() as connection:
        moved = await connection.execute(
            update(event_deliveries)
            .where(event_deliveries.c.sink == sink, event_deliveries.c.status == "pending")
            .values(sink=position)
        )
    return int(moved.rowcount)


async def test_deliveries_written_by_position_belong_to_their_url_and_are_never_dropped(
    sim: RunningSimulator, database_url: str
) -> None:
    # During a rolling upgrade the older instances write "webhook:1". The admin's list showed
    # them as a sink no longer configured, and a drop of "webhook:1" deleted them: deliveries
    # of a URL configured all along, lost.
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    async with merchant_endpoint() as first, merchant_endpoint() as second:
        first.down = True
        async with with_urls(sim, database_url, lambda: now[0], first.url, second.url) as service:
            kept = sink_of(first)
            await service.create()
            await service.container.relay.run_once()  # the first URL refuses: pending
            waiting = len(await deliveries(service, kept, "pending"))
            assert waiting
            assert await written_by_position(service, kept, "webhook:1") == waiting

            listed = await service.admin.get("/payments/v2/events/unconfigured-sinks")
            assert listed.json() == {"data": []}  # moved to the URL's sink first, not "left"
            assert len(await deliveries(service, kept, "pending")) == waiting

            assert await written_by_position(service, kept, "webhook:1") == waiting
            refused = await service.admin.post(
                "/payments/v2/events/unconfigured-sinks/drop", json={"sink": "webhook:1"}
            )
            assert refused.status_code == 409, refused.text
            assert refused.json()["type"].endswith("/sink-configured")
            assert kept in refused.json()["detail"]
            assert not await deliveries(service, kept, "pending")  # still "webhook:1": kept
            listed = await service.admin.get("/payments/v2/events/unconfigured-sinks")
            assert listed.json() == {"data": []}
            first.down = False
            now[0] += timedelta(minutes=10)
            await drained(service)
            assert len(set(first.received)) == waiting  # every one reached the first URL


async def test_deliveries_written_by_position_move_while_the_service_runs(
    sim: RunningSimulator, database_url: str
) -> None:
    # At start-up alone, what the last older instance wrote after the last new one started
    # stayed under "webhook:1", sent by nobody until the next restart.
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    async with merchant_endpoint() as first:
        first.down = True
        async with with_urls(sim, database_url, lambda: now[0], first.url) as service:
            kept = sink_of(first)
            await service.create()
            await service.container.relay.run_once()
            waiting = await written_by_position(service, kept, "webhook:1")
            assert waiting
            stop = asyncio.Event()
            loop = asyncio.create_task(
                adopt_position_names_until(service.container, stop, every=0.001)
            )
            async with asyncio.timeout(10):
                while len(await deliveries(service, kept, "pending")) < waiting:  # noqa: ASYNC110 - the rows move in the database
                    await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(loop, 10)

            # With no position recorded (a database that never had them), the loop ends.
            async with service.container.engine.begin() as connection:
                await connection.execute(delete(webhook_sink_aliases))
            ended = asyncio.create_task(
                adopt_position_names_until(service.container, asyncio.Event(), every=0.001)
            )
            await asyncio.wait_for(ended, 10)
