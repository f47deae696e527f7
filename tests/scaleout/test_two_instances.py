"""Two service instances sharing one PostgreSQL database and one Redis, one simulator whose
callbacks land on the other instance than the one that created the payment.

Pay everything (each callback also delivered twice by the simulator and raced at both instances
at once), read the event stream with two consumers of one group while both relays run, then take
the gateway down and watch both instances' breakers open together.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import func, select

from paytabs_guard.adapters.events import StreamConsumer
from paytabs_guard.adapters.sql.tables import outbox, payment_transitions
from paytabs_guard.entrypoints.bench.load_cluster import (
    SERVER_KEY,
    Cluster,
    Instance,
    run_cluster,
)
from paytabs_guard.resilience import BreakerEvent, EventType
from paytabs_simulator.config import SimulatorConfig
from paytabs_simulator.faults import Faults
from paytabs_simulator.server import RunningSimulator, run_simulator
from paytabs_simulator.signing import sign_body

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.redis]

PAYMENTS = 12
EVENTS_PER_PAYMENT = 3  # payment.created, payment.initiated, payment.completed
DEADLINE_SECONDS = 30.0


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(
        callback_retry_delays=(0.05, 0.1, 0.2, 0.4, 0.8),
        callback_timeout_seconds=5.0,
        # Every callback is sent twice (same bytes, same signature): duplicates on purpose.
        faults=Faults(callback_duplicate_rate=1.0),
    )
    async with run_simulator(config) as running:
        yield running


@pytest.fixture
async def cluster(
    sim: RunningSimulator, postgres_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Cluster]:
    async with run_cluster(
        sim.base_url, postgres_url, redis_url=redis_url, redis_prefix=redis_prefix
    ) as running:
        yield running


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def paid_callback(payment: Mapping[str, Any]) -> bytes:
    """PayTabs' callback for the paid page of ``payment``, as compact JSON."""
    body = {
        "tran_ref": payment["tran_ref"],
        "merchant_id": 123456,
        "profile_id": 987654,
        "cart_id": payment["cart_id"],
        "cart_description": payment["description"],
        "cart_currency": payment["currency"],
        "cart_amount": payment["amount"],
        "tran_currency": payment["currency"],
        "tran_total": payment["amount"],
        "tran_type": "Sale",
        "tran_class": "ECom",
        "payment_result": {
            "response_status": "A",
            "response_code": "G12345",
            "response_message": "Authorised",
            "transaction_time": "2025-01-29T10:00:00Z",
        },
        "payment_info": {
            "payment_method": "Visa",
            "card_type": "Credit",
            "card_scheme": "Visa",
            "payment_description": "4111 11## #### 1111",
        },
        "ipn_trace": f"IPNS0001.{secrets.token_hex(4).upper()}.00000001",
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def deliver(instance: Instance, raw: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Signature": sign_body(raw, SERVER_KEY)}
    return await instance.api.post("/payments/v2/webhook", content=raw, headers=headers)


async def create_and_pay(cluster: Cluster, sim: RunningSimulator) -> list[dict[str, Any]]:
    """Half the payments through each instance; every page paid at the simulator, and each
    callback raced at both instances at once on top of the simulator's two deliveries."""
    payments = []
    for n in range(PAYMENTS):
        response = await cluster.instances[n % 2].create()
        assert response.status_code == 201, response.text
        payments.append(response.json())
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=20) as browser:
        for payment in payments:
            page_id = str(payment["redirect_url"]).rsplit("/", 1)[-1]
            paid = await browser.post(
                f"/_sim/pages/{page_id}/pay", json={"card_number": "4111111111111111"}
            )
            assert paid.status_code == 200, paid.text
    raced = []
    for payment in payments:
        raw = paid_callback(payment)
        raced += [deliver(instance, raw) for instance in cluster.instances]
    answers = await asyncio.gather(*raced)
    assert {answer.status_code for answer in answers} == {200}
    await sim.engine.callbacks.wait_idle()
    return payments


def webhook_outcomes(instance: Instance) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in instance.container.metrics.registry.collect():
        if metric.name != "paytabs_guard_webhook_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("endpoint") == "ipn":
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


async def count_rows(cluster: Cluster, payment_id: str) -> tuple[int, int]:
    """(history entries into completed, payment.completed outbox rows) of one payment."""
    engine = cluster.instances[0].container.engine
    async with engine.connect() as connection:
        completed = await connection.execute(
            select(func.count())
            .select_from(payment_transitions)
            .where(payment_transitions.c.payment_id == payment_id)
            .where(payment_transitions.c.to_state == "completed")
        )
        events = await connection.execute(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.payment_id == payment_id)
            .where(outbox.c.type == "payment.completed")
        )
        return int(completed.scalar_one()), int(events.scalar_one())


async def outbox_event_ids(cluster: Cluster) -> set[str]:
    async with cluster.instances[0].container.engine.connect() as connection:
        rows = await connection.execute(select(outbox.c.event_id))
        return {str(row[0]) for row in rows}


async def consume(client: redis.Redis, stream: str, expected: set[str]) -> list[tuple[str, str]]:
    """Two consumers of one group read until every expected event is acked (or a deadline);
    returns (consumer, event id) for every entry acked."""
    consumers = [StreamConsumer(client, stream, "fulfilment", f"worker-{n}") for n in (1, 2)]
    await consumers[0].ensure_group()
    acked: list[tuple[str, str]] = []
    done = asyncio.Event()

    async def work(consumer: StreamConsumer, name: str) -> None:
        while not done.is_set():
            entries = await consumer.read(count=3, block_ms=100)
            for entry in entries:
                acked.append((name, entry.event_id))
            assert await consumer.ack(*entries) == len(entries)
            if {event_id for _, event_id in acked} >= expected:
                done.set()

    async with asyncio.timeout(DEADLINE_SECONDS):
        await asyncio.gather(*(work(c, f"worker-{n}") for n, c in enumerate(consumers, 1)))
    return acked


async def test_payments_spread_over_two_instances_are_applied_and_published_once(
    cluster: Cluster, sim: RunningSimulator, redis_client: redis.Redis, redis_prefix: str
) -> None:
    receiver = cluster.instances[1]
    payments = await create_and_pay(cluster, sim)

    for payment in payments:
        state = (await receiver.api.get(f"/payments/v2/{payment['id']}")).json()["state"]
        assert state == "completed", payment["id"]
        assert await count_rows(cluster, payment["id"]) == (1, 1), payment["id"]

    # Callbacks reached both instances; of the four deliveries of each payment exactly one was
    # applied, whichever instance got there first.
    outcomes = [webhook_outcomes(instance) for instance in cluster.instances]
    assert all(sum(counts.values()) > 0 for counts in outcomes)
    processed = sum(counts["processed"] for counts in outcomes)
    duplicates = sum(counts["duplicate"] for counts in outcomes)
    assert processed == PAYMENTS
    assert duplicates == 3 * PAYMENTS

    expected = await outbox_event_ids(cluster)
    assert len(expected) == EVENTS_PER_PAYMENT * PAYMENTS
    stream = f"{redis_prefix}events"
    acked = await consume(redis_client, stream, expected)
    assert Counter(event_id for _, event_id in acked) == Counter(expected)
    entries = await redis_client.xrange(stream)
    assert entries is not None
    assert Counter(str(fields["id"]) for _, fields in entries if fields) == Counter(expected)


async def test_a_gateway_outage_opens_the_breakers_of_both_instances_together(
    cluster: Cluster, sim: RunningSimulator
) -> None:
    a, b = cluster.instances
    opened = {instance.name: asyncio.Event() for instance in cluster.instances}
    for instance in cluster.instances:

        def on_event(event: BreakerEvent, name: str = instance.name) -> None:
            if event.breaker == "create" and event.type is EventType.OPENED:
                opened[name].set()

        instance.container.gateway.breakers.subscribe(on_event)

    sim.engine.set_faults(Faults(down=True))
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            while not opened[a.name].is_set():  # the outage as instance A sees it
                response = await a.create()
                assert response.status_code in (202, 503), response.text
            await opened[b.name].wait()  # B learns from A through Redis, with no traffic
        refused = await b.create()
    finally:
        sim.engine.set_faults(Faults())

    a_open, b_open = a.opened_at("create"), b.opened_at("create")
    assert a_open is not None
    assert b_open is not None
    assert a_open.reason == "error_rate"
    assert b_open.reason == "shared"
    assert seconds_between(a_open.timestamp, b_open.timestamp) <= 1.0
    snapshots = [i.container.gateway.breakers.snapshot()["create"] for i in cluster.instances]
    assert [s.state for s in snapshots] == ["open", "open"]
    assert snapshots[1].window.calls == 0  # B never called PayTabs for a create
    assert refused.status_code == 503  # and refuses at once while open


def seconds_between(first: datetime, second: datetime) -> float:
    return abs((second - first).total_seconds())
