"""The events API over real HTTP: the service on SQLite and PostgreSQL, the simulator, and a
merchant endpoint on loopback that receives the signed outgoing webhooks (and can be told to
fail, to make dead letters)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text as sql_text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paytabs_guard.adapters.events import CloudEvent
from paytabs_guard.adapters.events.outgoing_webhooks import endpoint_name
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_simulator.server import RunningSimulator

from .api_support import Service, running_service
from .relay_support import drained

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(b"events-api-test-secret-32-bytes!").decode()
WEBHOOK = "webhook:1"  # the first URL, as a request may still name it


def webhook_sink(service: Service) -> str:
    """The merchant endpoint's sink as the service names it: by its URL, not its position."""
    return "webhook:" + endpoint_name(service.container.settings.events_webhook_urls[0])


@dataclass
class Merchant:
    """The merchant's webhook endpoint: records event ids, answers 500 while ``down``."""

    url: str = ""
    down: bool = False
    received: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def merchant_endpoint() -> AsyncIterator[Merchant]:
    merchant = Merchant()

    async def hook(request: Request) -> Response:
        if merchant.down:
            return Response(status_code=500)
        merchant.received.append(json.loads(await request.body())["id"])
        return Response(status_code=204)

    async with serve_app(Starlette(routes=[Route("/hooks", hook, methods=["POST"])])) as url:
        merchant.url = f"{url}/hooks"
        yield merchant


@contextlib.asynccontextmanager
async def service_with_sinks(
    sim: RunningSimulator,
    database_url: str,
    clock: Callable[[], datetime] | None = None,
    **env: str,
) -> AsyncIterator[tuple[Service, Merchant, list[str]]]:
    """The service with a merchant webhook and an in-process subscriber ``erp``."""
    async with merchant_endpoint() as merchant:
        values = {"EVENTS_WEBHOOK_URLS": merchant.url, "EVENTS_WEBHOOK_SECRET": SECRET, **env}
        async with running_service(sim, database_url, env=values, clock=clock) as service:
            seen: list[str] = []

            async def erp(event: CloudEvent) -> None:
                seen.append(event.id)

            service.container.events.on("*", erp, name="erp")
            yield service, merchant, seen


async def first_attempt(service: Service, event_id: str) -> dict[str, Any]:
    """The webhook delivery of ``event_id`` once an attempt was made (by either relay)."""
    deadline = time.monotonic() + 15
    while True:
        await service.container.relay.run_once()
        one = (await service.api.get(f"/payments/v2/events/{event_id}")).json()
        sink = webhook_sink(service)
        webhook: dict[str, Any] = next(d for d in one["deliveries"] if d["sink"] == sink)
        if webhook["attempts"] or time.monotonic() > deadline:
            return webhook


async def feed_settled(service: Service) -> None:
    """On PostgreSQL the feed shows a committed event once no older transaction runs anywhere
    on the server (docs/events.md), and the suite's other workers run theirs beside this test:
    wait for the condition itself, up to 10 s, before reading the feed."""
    engine = service.container.engine
    if engine.dialect.name != "postgresql":
        return
    behind = sql_text(
        "SELECT coalesce(max(txid), 0) >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        " FROM outbox"
    )
    async with engine.connect() as connection:
        for _ in range(1000):
            if not (await connection.execute(behind)).scalar_one():
                return
            await connection.rollback()
            await asyncio.sleep(0.01)  # another worker's transaction, not time, is waited for
    raise AssertionError("a transaction older than this test's events ran for 10 s")


async def all_events(service: Service, **params: Any) -> list[dict[str, Any]]:
    """Every event matching ``params``, page by page (asserting each page's shape)."""
    await feed_settled(service)
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await service.api.get("/payments/v2/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return found


async def test_the_feed_pages_oldest_first_filters_and_resumes_from_its_cursor(
    sim: RunningSimulator, database_url: str
) -> None:
    async with service_with_sinks(sim, database_url) as (service, _merchant, _seen):
        payments = [await service.create() for _ in range(3)]
        everything = await all_events(service, limit=2)
        assert [event["payment_id"] for event in everything[:1]] == [payments[0]["id"]]
        assert len(everything) == sum([await service.outbox_events(p["id"]) for p in payments])
        assert len({event["id"] for event in everything}) == len(everything)
        for event in everything:
            assert event["event"]["id"] == event["id"]  # the CloudEvents envelope as sent
            assert event["event"]["type"] == event["type"]

        created = await all_events(service, type="payment.created")
        assert [e["payment_id"] for e in created] == [p["id"] for p in payments]
        second = await all_events(service, payment_id=payments[1]["id"])
        assert {e["payment_id"] for e in second} == {payments[1]["id"]}
        both = await all_events(service, type=["payment.created", "payment.initiated"], limit=100)
        assert {e["type"] for e in both} == {"payment.created", "payment.initiated"}

        # A poller keeps the last cursor; once the payment completes it gets only what is new.
        await feed_settled(service)
        last = await service.api.get("/payments/v2/events", params={"limit": 100})
        cursor = last.json()["next_cursor"]
        assert last.json()["has_more"] is False
        await service.pay(payments[0])
        await service.callbacks_done()
        await feed_settled(service)
        newer = await service.api.get("/payments/v2/events", params={"cursor": cursor})
        assert [e["type"] for e in newer.json()["data"]] == ["payment.completed"]
        # At the end of the feed its own cursor is "nothing new yet"; one past every event (made
        # up, or kept across a restore of an older database) would read so for ever: refused.
        end = await service.api.get(
            "/payments/v2/events", params={"cursor": newer.json()["next_cursor"]}
        )
        assert end.json()["data"] == []
        assert end.json()["next_cursor"] == newer.json()["next_cursor"]
        beyond = base64.urlsafe_b64encode(b"seq:1000000").decode().rstrip("=")
        refused = await service.api.get("/payments/v2/events", params={"cursor": beyond})
        assert refused.status_code == 400, refused.text
        assert "next_cursor" in refused.json()["detail"]


async def test_a_payments_events_show_each_sinks_delivery_and_can_be_redelivered(
    sim: RunningSimulator, database_url: str
) -> None:
    now = [datetime.now(UTC)]
    async with service_with_sinks(sim, database_url, lambda: now[0]) as (
        service,
        merchant,
        seen,
    ):
        payment = await service.create()
        await service.pay(payment)
        await service.callbacks_done()
        await drained(service)
        after = (await service.api.get(f"/payments/v2/{payment['id']}/events")).json()
        assert after["payment_id"] == payment["id"]
        types = [event["type"] for event in after["data"]]
        assert types[-1] == "payment.completed"
        for event in after["data"]:
            assert event["fanned_out_at"] is not None
            outcome = {(d["sink"], d["status"], d["attempts"]) for d in event["deliveries"]}
            made = (webhook_sink(service), "delivered", 1)
            assert outcome == {("subscriber:erp", "delivered", 1), made}
        completed = after["data"][-1]["id"]
        assert merchant.received.count(completed) == 1

        # Redeliver to the merchant only, which is down for now: the subscriber is left alone.
        merchant.down = True
        response = await service.api.post(
            f"/payments/v2/events/{completed}/redeliver", json={"sinks": [WEBHOOK]}
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"event_id": completed, "sinks": [webhook_sink(service)]}
        one = (await service.api.get(f"/payments/v2/events/{completed}")).json()
        states = {d["sink"]: d["status"] for d in one["deliveries"]}
        assert states == {"subscriber:erp": "delivered", webhook_sink(service): "pending"}
        webhook = await first_attempt(service, completed)  # fails, backs off (up to 5 s)
        assert (webhook["status"], webhook["attempts"]) == ("pending", 1)
        assert "HTTP 500" in webhook["last_error"]
        assert webhook["next_attempt_at"] is not None
        # While it is on its way, asking again is a conflict, not a second copy.
        again = await service.api.post(
            f"/payments/v2/events/{completed}/redeliver", json={"sinks": [WEBHOOK]}
        )
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        detail = again.json()["detail"]
        # It names the delivery asked for; the subscriber's was made, not "every" one pending.
        assert f"the delivery to {webhook_sink(service)} is still pending" in detail
        assert "every delivery" not in detail
        merchant.down = False
        now[0] += timedelta(seconds=10)  # past the backoff
        await drained(service)
        assert merchant.received.count(completed) == 2
        assert seen.count(completed) == 1

        # An empty list names no sink: refused, not taken for "every sink"
        none = await service.api.post(
            f"/payments/v2/events/{completed}/redeliver", json={"sinks": []}
        )
        assert none.status_code == 422, none.text
        await drained(service)
        assert (merchant.received.count(completed), seen.count(completed)) == (2, 1)

        # Without a body: every sink.
        everyone = await service.api.post(f"/payments/v2/events/{completed}/redeliver")
        assert everyone.json()["sinks"] == sorted(["subscriber:erp", webhook_sink(service)])
        await drained(service)
        assert (merchant.received.count(completed), seen.count(completed)) == (3, 2)


@pytest.mark.postgres
async def test_a_payments_events_show_at_once_while_an_older_transaction_runs(
    sim: RunningSimulator, postgres_url: str
) -> None:
    """The feed holds an event back until every older transaction on the server has ended (its
    cursor must not step past a late commit); a payment's own events have no cursor, so what is
    committed shows at once: the payment's state and its events agree."""
    async with running_service(sim, postgres_url) as service:
        async with service.container.engine.connect() as other:
            await other.begin()
            # Another session's open transaction with an id, as an idle one in a transaction
            # or a long report would hold.
            await other.execute(sql_text("SELECT pg_current_xact_id()"))
            payment = await service.create()
            mine = await service.api.get(f"/payments/v2/{payment['id']}/events")
            assert [e["type"] for e in mine.json()["data"]] == [
                "payment.created",
                "payment.initiated",
            ]
            only_this = {"payment_id": payment["id"]}
            held = await service.api.get("/payments/v2/events", params=only_this)
            assert held.json()["data"] == []
            await other.rollback()
        await feed_settled(service)
        feed = await service.api.get("/payments/v2/events", params=only_this)
        assert [e["id"] for e in feed.json()["data"]] == [e["id"] for e in mine.json()["data"]]


async def test_unknown_ids_sinks_and_cursors_get_problems_that_say_what_to_fix(
    service: Service,
) -> None:
    payment = await service.create()
    missing = await service.api.get("/payments/v2/pay_nope/events")
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("payment-not-found")
    event = await service.api.get("/payments/v2/events/evt_nope")
    assert event.status_code == 404
    assert "GET /payments/v2/events" in event.json()["detail"]
    redeliver = await service.api.post("/payments/v2/events/evt_nope/redeliver")
    assert redeliver.status_code == 404
    # No sink is configured: the event was never handed to one, so there is nothing to repeat.
    first = (await service.api.get(f"/payments/v2/{payment['id']}/events")).json()["data"][0]
    nothing = await service.api.post(f"/payments/v2/events/{first['id']}/redeliver")
    assert nothing.status_code == 409
    assert "not been handed to any sink" in nothing.json()["detail"]
    wrong_sink = await service.api.post(
        f"/payments/v2/events/{first['id']}/redeliver", json={"sinks": ["webhook:9"]}
    )
    # A sink the event never had is a mistake in the request, not "come back later".
    assert wrong_sink.status_code == 422
    assert "webhook:9" in wrong_sink.json()["detail"]
    assert "Redeliver once" not in wrong_sink.json()["detail"]
    arabic_three = "seq:\u0663".encode()  # a digit, but not one a cursor is written with
    for cursor in (
        "garbage",
        *(base64.urlsafe_b64encode(text).decode() for text in (b"dead:1", arabic_three)),
    ):
        bad = await service.api.get("/payments/v2/events", params={"cursor": cursor})
        assert bad.status_code == 400, cursor
        assert "next_cursor" in bad.json()["detail"]
    # A typo in a type filter is named, not answered with an empty feed.
    typo = await service.api.get("/payments/v2/events", params={"type": "payment.complete"})
    assert typo.status_code == 422, typo.text
    assert "payment.completed" in typo.json()["errors"][0]["message"]
    typo_dead = await service.admin.get(
        "/payments/v2/events/dead-letters", params={"type": "payment.complete"}
    )
    assert typo_dead.status_code == 422
    typo_replay = await service.admin.post(
        "/payments/v2/events/dead-letters/replay", json={"type": "payment.complete"}
    )
    assert typo_replay.status_code == 422
    assert typo_replay.json()["errors"][0]["field"] == "type"
    too_many = await service.api.get("/payments/v2/events", params={"limit": 101})
    assert too_many.status_code == 422
    unauthenticated = await service.anonymous.get("/payments/v2/events")
    assert unauthenticated.status_code == 401


async def test_dead_letters_are_listed_and_replayed_by_an_admin(
    sim: RunningSimulator, database_url: str
) -> None:
    async with service_with_sinks(sim, database_url, EVENTS_MAX_ATTEMPTS="1") as (
        service,
        merchant,
        seen,
    ):
        merchant.down = True
        payments = [await service.create() for _ in range(2)]
        await drained(service)
        expected = sum([await service.outbox_events(p["id"]) for p in payments])
        assert len(seen) == expected  # the subscriber took them all; only the webhook died

        forbidden = await service.api.get("/payments/v2/events/dead-letters")
        assert forbidden.status_code == 403
        letters: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = await service.admin.get("/payments/v2/events/dead-letters", params=params)
            assert page.status_code == 200, page.text
            letters.extend(page.json()["data"])
            cursor = page.json()["next_cursor"]
            assert page.json()["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert len(letters) == expected
        assert {letter["delivery"]["sink"] for letter in letters} == {webhook_sink(service)}
        assert all("HTTP 500" in letter["delivery"]["last_error"] for letter in letters)
        metrics = (await service.anonymous.get("/metrics")).text
        assert f"paytabs_guard_event_dead_letters {float(expected)}" in metrics

        empty = await service.admin.post("/payments/v2/events/dead-letters/replay", json={})
        assert empty.status_code == 422
        assert "a sink, or a type" in empty.json()["detail"]
        merchant.down = False
        one = await service.admin.post(
            "/payments/v2/events/dead-letters/replay", json={"ids": [letters[0]["id"]]}
        )
        assert one.json() == {"replayed": 1}
        rest = await service.admin.post(
            "/payments/v2/events/dead-letters/replay", json={"sink": WEBHOOK}
        )
        assert rest.json() == {"replayed": expected - 1}
        await drained(service)
        assert sorted(merchant.received) == sorted(letter["event_id"] for letter in letters)
        left = await service.admin.get("/payments/v2/events/dead-letters")
        assert left.json() == {"data": [], "next_cursor": None, "has_more": False}
        again = await service.admin.post(
            "/payments/v2/events/dead-letters/replay", json={"sink": WEBHOOK}
        )
        assert again.json() == {"replayed": 0}


@pytest.mark.parametrize(
    "ids",
    [[2**63], [-(2**63) - 1], [0], [True], [1e2], ["7"]],
    ids=["past-64-bits", "below-64-bits", "zero", "boolean", "float", "string"],
)
async def test_a_replay_names_dead_letters_by_positive_64_bit_integers(
    service: Service, ids: list[Any]
) -> None:
    # Past 64 bits the database driver raised (a 500); true and 1e2 were read as 1 and 100.
    response = await service.admin.post(
        "/payments/v2/events/dead-letters/replay", json={"ids": ids}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == ["ids.0"]
