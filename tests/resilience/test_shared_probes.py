"""Recovery probes shared through a real Redis: one prober at a time, every instance learns.

Two registries play two service instances; breakers run on manual clocks, the lease and the
messages go through Redis for real.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from breaker_support import SEED, Boom, Declined, only_booms, trip

from paytabs_guard.resilience import (
    BreakerConfig,
    BreakerProber,
    BreakerRegistry,
    CircuitBreaker,
    ManualClock,
)
from paytabs_guard.resilience.shared import SharedBreakerState

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

CONFIG = replace(SEED, probe_interval=1.0, min_open_time=2.0, is_failure=only_booms)


class Gateway:
    def __init__(self) -> None:
        self.up = False
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        if not self.up:
            raise Boom("down")
        raise Declined("not found")


@dataclass
class Instance:
    clock: ManualClock
    shared: SharedBreakerState
    prober: BreakerProber

    @property
    def create(self) -> CircuitBreaker:
        return self.prober._registry.get("create")


def build(
    url: str, prefix: str, name: str, gateway: Gateway, seed: int, config: BreakerConfig = CONFIG
) -> Instance:
    clock = ManualClock()
    shared = SharedBreakerState(
        url, prefix=prefix, instance_id=name, poll_interval=0.05, op_timeout=0.3,
        reconnect_delay=0.05, clock=clock,
    )  # fmt: skip
    registry = BreakerRegistry(config, clock=clock, shared=shared, rng=random.Random(seed))
    registry.get("create")
    prober = BreakerProber(
        registry, {"create": gateway.probe}, timeout=0.5, lease=shared, clock=clock
    )
    return Instance(clock, shared, prober)


@pytest.fixture
async def pair(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Instance, Instance, Gateway]]:
    gateway = Gateway()
    a = build(redis_url, redis_prefix, "instance-a", gateway, 1)
    b = build(redis_url, redis_prefix, "instance-b", gateway, 2)
    async with a.shared, b.shared:
        async with asyncio.timeout(5):
            await a.shared.wait_reachable()
            await b.shared.wait_reachable()
        yield a, b, gateway
        await a.prober.aclose()
        await b.prober.aclose()


async def wait_for_state(breaker: CircuitBreaker, state: str, within: float = 2.0) -> None:
    seen = asyncio.Event()

    def on_event(event: object) -> None:
        if breaker.state == state:
            seen.set()

    unsubscribe = breaker.subscribe(on_event)
    try:
        if breaker.state != state:
            async with asyncio.timeout(within):
                await seen.wait()
    finally:
        unsubscribe()


async def tick_both(a: Instance, b: Instance) -> None:
    for instance in (a, b):
        instance.clock.advance(1.25)
    await a.prober.tick()
    await b.prober.tick()


async def test_one_instance_probes_at_a_time_and_both_learn_the_verdict(
    pair: tuple[Instance, Instance, Gateway],
) -> None:
    a, b, gateway = pair
    await trip(a.create)
    await wait_for_state(b.create, "open")
    for _ in range(5):
        await tick_both(a, b)
    assert gateway.probes == 5  # five rounds, one probe each: the lease holder's
    holders = [i for i in (a, b) if i.create.snapshot().probes.sent]
    assert len(holders) == 1
    prober, other = holders[0], (b if holders[0] is a else a)
    assert prober.create.snapshot().probes.prober is True
    assert other.create.snapshot().probes.last_result == "failed"  # learned from the other
    gateway.up = True
    await tick_both(a, b)
    assert prober.create.state == "half_open"
    await wait_for_state(other.create, "half_open")


async def test_the_lease_passes_to_the_other_instance_when_its_holder_stops(
    pair: tuple[Instance, Instance, Gateway],
) -> None:
    a, b, gateway = pair
    await trip(a.create)
    await wait_for_state(b.create, "open")
    await tick_both(a, b)
    holder, other = (a, b) if a.create.snapshot().probes.sent else (b, a)
    await holder.prober.aclose()  # a clean stop releases the lease at once
    sent_before = other.create.snapshot().probes.sent
    other.clock.advance(1.25)
    await other.prober.tick()
    assert other.create.snapshot().probes.sent == sent_before + 1
    assert gateway.probes == 2


async def test_an_instance_started_during_an_outage_starts_open(
    redis_url: str, redis_prefix: str
) -> None:
    # The opening was written for one open period (1 ms here; 2 s by default) and nothing
    # renewed it: an instance started later found no opening and sent its first payments into
    # the outage. Failed probes keep it alive; a probe that is answered removes it.
    gateway = Gateway()
    config = replace(CONFIG, min_open_time=0.001)
    a = build(redis_url, redis_prefix, "instance-a", gateway, 1, config)
    async with a.shared:
        async with asyncio.timeout(5):
            await a.shared.wait_reachable()
        await trip(a.create)
        for _ in range(3):
            a.clock.advance(1.25)
            await a.prober.tick()
        await a.shared.flush()
        assert a.create.state == "open"
        late = build(redis_url, redis_prefix, "instance-late", gateway, 2, config)
        async with late.shared:
            async with asyncio.timeout(5):
                await late.shared.wait_synced()
            assert late.create.state == "open"
            gateway.up = True
            a.clock.advance(1.25)
            await a.prober.tick()
            await a.shared.flush()
            assert a.create.state == "half_open"
            await wait_for_state(late.create, "half_open")
            fresh = build(redis_url, redis_prefix, "instance-fresh", gateway, 3, config)
            async with fresh.shared:
                async with asyncio.timeout(5):
                    await fresh.shared.wait_synced()
                assert fresh.create.state == "closed"  # the opening went with the answer
            await late.prober.aclose()
        await a.prober.aclose()
