"""Breaker state shared through a real Redis: two registries play two service instances.

Breakers run on manual clocks while Redis keys expire in real time, so when a test jumps the
clocks past the reset timeout it also expires the ``open_until`` keys by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import redis.asyncio as redis
from breaker_support import SEED, Boom, Gate, ok, settle, trip
from redis.asyncio.connection import parse_url

from paytabs_guard.resilience import (
    BreakerEvent,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    EventType,
    ManualClock,
)
from paytabs_guard.resilience.shared import SharedBreakerState
from paytabs_guard.resilience.shared_wire import Keys

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

WITHIN = 1.0  # seconds: the promise made to the other instances


@dataclass
class Instance:
    """One service instance: its clock, its shared-state listener, its breakers."""

    clock: ManualClock
    shared: SharedBreakerState
    registry: BreakerRegistry

    @property
    def create(self) -> CircuitBreaker:
        return self.registry.get("create")


def build(url: str, prefix: str, name: str, *, poll_interval: float = 0.05) -> Instance:
    clock = ManualClock()
    shared = SharedBreakerState(
        url,
        prefix=prefix,
        instance_id=name,
        poll_interval=poll_interval,
        op_timeout=0.3,
        reconnect_delay=0.05,
        clock=clock,
    )
    return Instance(clock, shared, BreakerRegistry(SEED, clock=clock, shared=shared))


class Waiter:
    """Waits (with a timeout, never a sleep) for one event type of one breaker."""

    def __init__(self, breaker: CircuitBreaker, event_type: EventType) -> None:
        self.event_type = event_type
        self.seen = asyncio.Event()
        self.events: list[BreakerEvent] = []
        breaker.subscribe(self)

    def __call__(self, event: BreakerEvent) -> None:
        if event.type is self.event_type:
            self.events.append(event)
            self.seen.set()

    async def wait(self, within: float = WITHIN) -> BreakerEvent:
        async with asyncio.timeout(within):
            await self.seen.wait()
        return self.events[-1]


async def eventually(condition: Callable[[], bool], within: float = WITHIN) -> None:
    """Yield to the loop until ``condition`` holds: for effects that raise no event."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - there is no event to wait on; no time passes
            await asyncio.sleep(0)


async def expire_open_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}breaker:*:open_until")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def pair(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[Instance, Instance]]:
    a = build(redis_url, redis_prefix, "instance-a")
    b = build(redis_url, redis_prefix, "instance-b")
    async with a.shared, b.shared:
        async with asyncio.timeout(5):
            await a.shared.wait_reachable()
            await b.shared.wait_reachable()
        yield a, b


async def open_both(a: Instance, b: Instance) -> None:
    """A trips on its own window; B learns from Redis."""
    opened = Waiter(b.create, EventType.OPENED)
    assert a.create.state == "closed"  # both instances know the breaker before it trips
    await trip(a.create)
    event = await opened.wait()
    assert (event.reason, event.previous_state) == ("shared", "closed")


async def reach_trial_time(a: Instance, b: Instance, redis_url: str, prefix: str) -> None:
    await expire_open_keys(redis_url, prefix)
    a.clock.advance(30)
    b.clock.advance(30)


# -- opening spreads ------------------------------------------------------------------------


async def test_when_one_instance_opens_the_other_rejects_within_a_second(
    pair: tuple[Instance, Instance],
) -> None:
    a, b = pair
    called = False

    async def must_not_run() -> str:
        nonlocal called
        called = True
        return "ran"

    await open_both(a, b)
    with pytest.raises(CircuitOpenError) as rejected:
        await b.create.call(must_not_run)
    assert not called
    assert 29.0 < rejected.value.retry_after_seconds <= 30.0
    snapshot = b.create.snapshot()
    assert snapshot.state == "open"
    assert snapshot.window.calls == 0  # B itself saw no failure
    assert snapshot.as_dict()["shared"] == {
        "enabled": True,
        "reachable": True,
        "last_error": None,
        "instance": "instance-b",
    }


async def test_an_instance_that_missed_the_message_catches_up_by_polling(
    redis_url: str, redis_prefix: str
) -> None:
    a = build(redis_url, redis_prefix, "instance-a")
    b = build(redis_url, redis_prefix, "instance-b", poll_interval=0.2)
    async with a.shared, b.shared:
        async with asyncio.timeout(5):
            await a.shared.wait_reachable()
            await b.shared.wait_reachable()
        await trip(a.create)
        await a.shared.flush()
        late = b.create  # created after the message went by
        opened = Waiter(late, EventType.OPENED)
        await opened.wait()
        with pytest.raises(CircuitOpenError):
            await late.call(ok)


# -- one trial for all ----------------------------------------------------------------------


async def test_only_one_instance_probes_and_its_success_closes_both(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    a, b = pair
    await open_both(a, b)
    await reach_trial_time(a, b, redis_url, redis_prefix)
    gate = Gate()
    # The first ask starts the lease race in the background and is rejected meanwhile.
    for instance in (a, b):
        with pytest.raises(CircuitOpenError):
            await instance.create.call(gate)
    await a.shared.flush()
    await b.shared.flush()
    tasks = [asyncio.create_task(i.create.call(gate)) for i in (a, b, a, b)]
    await settle()
    assert gate.entered == 1  # one trial across both instances
    winner, loser = (a, b) if a.create.state == "half_open" else (b, a)
    assert (winner.create.state, loser.create.state) == ("half_open", "open")
    closed = Waiter(loser.create, EventType.CLOSED)
    gate.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == 1
    assert sum(isinstance(result, CircuitOpenError) for result in results) == 3
    assert winner.create.state == "closed"
    event = await closed.wait()
    assert event.reason == "shared"
    assert await loser.create.call(ok) == "ok"


async def test_a_failed_trial_keeps_every_instance_open(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    a, b = pair
    await open_both(a, b)
    await reach_trial_time(a, b, redis_url, redis_prefix)

    async def boom() -> str:
        raise Boom

    for instance in (a, b):
        with pytest.raises(CircuitOpenError):
            await instance.create.call(boom)
    await a.shared.flush()
    await b.shared.flush()
    outcomes = []
    for instance in (a, b):
        try:
            await instance.create.call(boom)
        except (Boom, CircuitOpenError) as error:
            outcomes.append(type(error))
    assert sorted(outcome.__name__ for outcome in outcomes) == ["Boom", "CircuitOpenError"]
    winner, loser = (a, b) if outcomes[0] is Boom else (b, a)
    assert winner.create.state == "open"
    # The loser stays open and takes the winner's new open period (no event: no state change).
    await winner.shared.flush()
    await eventually(lambda: (loser.create.snapshot().next_trial_in or 0.0) > 29.0)
    assert loser.create.state == "open"


# -- Redis trouble --------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_redis_leaves_breakers_working_locally(redis_prefix: str) -> None:
    instance = build(f"redis://127.0.0.1:{closed_port()}/0", redis_prefix, "lonely")
    breaker = instance.create
    assert breaker.snapshot().shared.reachable is None  # not started: nothing known yet
    async with instance.shared:
        async with asyncio.timeout(5):
            await instance.shared.wait_reachable(False)
        await trip(breaker)
        instance.clock.advance(30)
        assert await breaker.call(ok) == "ok"  # trial admitted locally, no lease needed
        assert breaker.state == "closed"
        await instance.shared.flush()
        shared = breaker.snapshot().as_dict()["shared"]
    assert shared["enabled"] is True
    assert shared["reachable"] is False
    assert "ConnectionError" in shared["last_error"]


class Proxy:
    """A TCP forwarder to Redis that can be pulled out mid-test, or that never answers."""

    def __init__(self, upstream: tuple[str, int], *, black_hole: bool = False) -> None:
        self.upstream = upstream
        self.black_hole = black_hole
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        if self.black_hole:
            with contextlib.suppress(Exception):
                while await reader.read(4096):
                    pass
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers.add(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()


async def test_redis_going_away_mid_run(redis_url: str, redis_prefix: str) -> None:
    address = urlsplit(redis_url)
    proxy = Proxy((address.hostname or "127.0.0.1", address.port or 6379))
    instance = build(await proxy.start(), redis_prefix, "survivor")
    breaker = instance.create
    async with instance.shared:
        async with asyncio.timeout(5):
            await instance.shared.wait_reachable()
        assert breaker.snapshot().shared.reachable is True
        await proxy.close()
        async with asyncio.timeout(5):
            await instance.shared.wait_reachable(False)
        await trip(breaker)
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)
        instance.clock.advance(30)
        assert await breaker.call(ok) == "ok"
        assert breaker.state == "closed"
        await instance.shared.flush()
        snapshot = breaker.snapshot()
    assert snapshot.shared.reachable is False
    assert snapshot.shared.last_error


async def test_a_redis_that_never_answers_never_delays_a_call(redis_prefix: str) -> None:
    proxy = Proxy(("127.0.0.1", 0), black_hole=True)
    instance = build(await proxy.start(), redis_prefix, "patient")
    try:
        async with instance.shared:
            await settle()
            for _ in range(20):
                assert await instance.create.call(ok) == "ok"
            query = instance.registry.get("query")
            await trip(query)  # publishing the opening waits in the background
            assert query.snapshot().shared.reachable is not True
            async with asyncio.timeout(5):
                await instance.shared.wait_reachable(False)
            assert "TimeoutError" in (instance.create.snapshot().shared.last_error or "")
    finally:
        await proxy.close()


async def test_foreign_and_malformed_messages_are_ignored(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    _, b = pair
    opened = Waiter(b.create, EventType.OPENED)
    client = redis.Redis.from_url(redis_url)
    try:
        channel = Keys(redis_prefix, int(parse_url(redis_url).get("db") or 0)).channel
        await client.publish(channel, "not json")
        await client.publish(channel, json.dumps({"event": "opened", "instance": "x"}))
        unknown = {"v": 1, "event": "opened", "name": "nobody", "instance": "x", "open_for": 5}
        await client.publish(channel, json.dumps(unknown))
        real = {"v": 1, "event": "opened", "name": "create", "instance": "x", "open_for": 5}
        await client.publish(channel, json.dumps(real))
    finally:
        await client.aclose()
    await opened.wait()
    assert b.create.snapshot().next_trial_in == pytest.approx(5.0)


# -- one deployment per database ------------------------------------------------------------


def _other_database(url: str) -> str:
    """The same Redis server, another database number (a second deployment's)."""
    parts = urlsplit(url)
    current = int(parts.path.strip("/") or 0)
    return parts._replace(path=f"/{(current + 1) % 16}").geturl()


async def test_a_deployment_on_another_redis_database_shares_nothing(
    redis_url: str, redis_prefix: str
) -> None:
    """Pub/sub ignores the database number: staging on db 1 and production on db 0 of one
    Redis server must not open (or half-open) each other's breakers through the channel."""
    other_url = _other_database(redis_url)
    a = build(redis_url, redis_prefix, "deployment-1-a")
    a2 = build(redis_url, redis_prefix, "deployment-1-b")
    b = build(other_url, redis_prefix, "deployment-2-a")
    b2 = build(other_url, redis_prefix, "deployment-2-b")
    try:
        async with a.shared, a2.shared, b.shared, b2.shared:
            async with asyncio.timeout(5):
                for instance in (a, a2, b, b2):
                    await instance.shared.wait_reachable()
            for instance in (a2, b, b2):  # every breaker exists before anything trips
                assert (instance.create.state, instance.registry.get("query").state) == (
                    "closed",
                    "closed",
                )
            same_deployment = Waiter(a2.create, EventType.OPENED)
            await trip(a.create)
            await same_deployment.wait()  # deployment 1's message went out and arrived
            # Deployment 2 speaks after it, so b has read everything published before.
            heard = Waiter(b.registry.get("query"), EventType.OPENED)
            await trip(b2.registry.get("query"))
            await heard.wait()
            assert b.create.state == "closed"
            assert a2.registry.get("query").state == "closed"
    finally:
        client = redis.Redis.from_url(other_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


# -- an operator's manual states ------------------------------------------------------------


async def manual_key(url: str, prefix: str, name: str = "create") -> tuple[str | None, int]:
    """The stored manual state of breaker ``name`` and its time to live (-2: no key)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        key = Keys(prefix, int(parse_url(url).get("db") or 0)).manual(name)
        value = await client.get(key)
        return (None if value is None else str(value)), await client.pttl(key)
    finally:
        await client.aclose()


async def test_forcing_open_on_one_instance_rejects_on_the_other(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    a, b = pair
    forced = Waiter(b.create, EventType.OPENED)
    assert a.create.state == "closed"  # both instances know the breaker (the service's do)
    outcome = await a.shared.command("create", "forced_open")
    assert (outcome.shared, outcome.error) == (True, None)
    assert a.create.state == "forced_open"  # here at once, before anyone hears of it
    event = await forced.wait()
    assert (event.state, event.reason) == ("forced_open", "shared")
    with pytest.raises(CircuitOpenError):
        await b.create.call(ok)
    # Stored without expiry: it holds until someone resets it, restarts included.
    value, ttl = await manual_key(redis_url, redis_prefix)
    assert value is not None
    assert json.loads(value)["state"] == "forced_open"
    assert json.loads(value)["instance"] == "instance-a"
    assert ttl == -1
    # A manual state still ignores automatic shared state: an opening elsewhere leaves it.
    forced_closed = Waiter(a.create, EventType.CLOSED)
    await b.shared.command("create", "forced_closed")
    assert (await forced_closed.wait()).state == "forced_closed"
    query = a.registry.get("query")
    query_opened = Waiter(query, EventType.OPENED)
    client = redis.Redis.from_url(redis_url)
    try:
        channel = Keys(redis_prefix, int(parse_url(redis_url).get("db") or 0)).channel
        for name in ("create", "query"):  # the query's opening arrives after the create's
            body = {"v": 1, "event": "opened", "name": name, "instance": "x", "open_for": 30}
            await client.publish(channel, json.dumps(body))
    finally:
        await client.aclose()
    await query_opened.wait()
    assert a.create.state == "forced_closed"


async def test_a_command_whose_message_was_missed_arrives_by_polling(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    """Written to Redis without a message (as if the message were lost): the poll finds it."""
    _, b = pair
    forced = Waiter(b.create, EventType.OPENED)
    client = redis.Redis.from_url(redis_url)
    try:
        key = Keys(redis_prefix, int(parse_url(redis_url).get("db") or 0)).manual("create")
        record = {"v": 1, "state": "forced_open", "token": "t1", "instance": "gone", "at": ""}
        await client.set(key, json.dumps(record))
    finally:
        await client.aclose()
    assert (await forced.wait()).state == "forced_open"
    with pytest.raises(CircuitOpenError):
        await b.create.call(ok)


async def test_an_instance_started_later_starts_forced(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    a, _ = pair
    assert a.create.state == "closed"
    assert (await a.shared.command("create", "forced_open")).shared
    late = build(redis_url, redis_prefix, "instance-c")
    breaker = late.create  # the service creates its breakers before the listener's first read
    async with late.shared:
        async with asyncio.timeout(5):
            assert await late.shared.wait_synced()
        assert breaker.state == "forced_open"  # by the end of start-up, not a poll later
        with pytest.raises(CircuitOpenError):
            await breaker.call(ok)


async def test_reset_clears_it_everywhere(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    a, b = pair
    forced = Waiter(b.create, EventType.OPENED)
    assert a.create.state == "closed"
    await a.shared.command("create", "forced_open")
    await forced.wait()
    closed = Waiter(a.create, EventType.CLOSED)
    outcome = await b.shared.command("create", "reset")  # from the other instance
    assert outcome.shared
    assert b.create.state == "closed"
    assert (await closed.wait()).reason == "shared"
    assert await a.create.call(ok) == "ok"
    assert await manual_key(redis_url, redis_prefix) == (None, -2)
    # An instance started now starts closed.
    late = build(redis_url, redis_prefix, "instance-c")
    async with late.shared:
        async with asyncio.timeout(5):
            assert await late.shared.wait_synced()
        assert late.create.state == "closed"


async def test_a_reset_whose_message_was_missed_arrives_by_polling(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    a, b = pair
    forced = Waiter(b.create, EventType.OPENED)
    assert a.create.state == "closed"
    await a.shared.command("create", "forced_open")
    await forced.wait()
    closed_a, closed_b = Waiter(a.create, EventType.CLOSED), Waiter(b.create, EventType.CLOSED)
    client = redis.Redis.from_url(redis_url)
    try:  # the key goes without a message: a reset whose message both missed
        await client.delete(Keys(redis_prefix).manual("create"))
    finally:
        await client.aclose()
    await closed_a.wait()
    await closed_b.wait()
    assert (a.create.state, b.create.state) == ("closed", "closed")


async def test_reset_also_ends_an_automatic_opening_everywhere(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    """Otherwise the ``open_until`` key left in Redis re-opens the breakers at the next poll."""
    a, b = pair
    await open_both(a, b)
    closed = Waiter(b.create, EventType.CLOSED)
    assert (await a.shared.command("create", "reset")).shared
    assert (await closed.wait()).reason == "shared"
    client = redis.Redis.from_url(redis_url)
    try:
        assert not await client.exists(Keys(redis_prefix).open_until("create"))
    finally:
        await client.aclose()
    assert (a.create.state, b.create.state) == ("closed", "closed")


async def test_forcing_with_redis_down_applies_here_and_says_so(redis_prefix: str) -> None:
    instance = build(f"redis://127.0.0.1:{closed_port()}/0", redis_prefix, "lonely")
    assert instance.create.state == "closed"
    async with instance.shared:
        async with asyncio.timeout(5):
            await instance.shared.wait_reachable(False)
            outcome = await instance.shared.command("create", "forced_open")
        assert outcome.shared is False
        assert "ConnectionError" in (outcome.error or "")
        assert instance.create.state == "forced_open"
        with pytest.raises(CircuitOpenError):
            await instance.create.call(ok)
        outcome = await instance.shared.command("create", "reset")
        assert (outcome.shared, instance.create.state) == (False, "closed")


async def test_a_redis_that_never_answers_never_delays_a_command_or_a_call(
    redis_prefix: str,
) -> None:
    proxy = Proxy(("127.0.0.1", 0), black_hole=True)
    instance = build(await proxy.start(), redis_prefix, "patient")
    breaker = instance.create
    try:
        async with instance.shared:
            loop = asyncio.get_running_loop()
            started = loop.time()
            command = asyncio.create_task(instance.shared.command("create", "forced_open"))
            await settle()
            # The write is still waiting on Redis; the breaker is forced open already.
            assert not command.done()
            assert breaker.state == "forced_open"
            with pytest.raises(CircuitOpenError):
                await breaker.call(ok)
            outcome = await command
            assert outcome.shared is False
            assert "TimeoutError" in (outcome.error or "")
            assert loop.time() - started < 0.3 + 0.5  # op_timeout, plus scheduling slack
    finally:
        await proxy.close()


async def test_callers_held_at_trial_time_wait_for_the_lease_instead_of_being_turned_away(
    pair: tuple[Instance, Instance], redis_url: str, redis_prefix: str
) -> None:
    """``Prefer: wait`` holds callers until a call would be let through. At the end of the
    open period that is only once this instance holds the trial lease (another instance may
    win it): a held caller let through before that was rejected by its own trial's lease
    request, and every held create got a 503 at the moment PayTabs was back."""
    a, b = pair
    await open_both(a, b)
    await reach_trial_time(a, b, redis_url, redis_prefix)
    assert await a.create.wait_admitting(2.0)
    assert await a.create.call(ok) == "ok"  # a won the lease and ran the trial
    assert a.create.state == "closed"
    # b, held meanwhile, is let through once a's verdict reaches it
    assert await b.create.wait_admitting(2.0)
    assert await b.create.call(ok) == "ok"
