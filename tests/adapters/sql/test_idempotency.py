"""Idempotency keys: NEW, IN_FLIGHT, COMPLETED, MISMATCH, expiry; one winner among racers."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql import SqlIdempotencyStore
from paytabs_guard.service.ports import ClaimStatus, IdempotencyClaim, StoredResponse

from .builders import T0

pytestmark = pytest.mark.anyio

DAY = 24 * 3600
SCOPE = "payments.create:client-1"
CREATED = StoredResponse(status_code=201, body='{"id":"pay_1"}', resource_id="pay_1")


@pytest.fixture
def store(engine: AsyncEngine) -> SqlIdempotencyStore:
    return SqlIdempotencyStore(engine)


async def _claim(
    store: SqlIdempotencyStore, fingerprint: str = "fp-a", *, hours: float = 0, key: str = "k1"
) -> IdempotencyClaim:
    now = T0 + timedelta(hours=hours)
    return await store.claim(SCOPE, key, fingerprint, now=now, ttl_seconds=DAY)


async def test_a_new_key_is_claimed_and_a_retry_while_running_is_in_flight(
    store: SqlIdempotencyStore,
) -> None:
    assert await _claim(store) == IdempotencyClaim(ClaimStatus.NEW)
    assert await _claim(store, hours=1 / 60) == IdempotencyClaim(ClaimStatus.IN_FLIGHT)
    assert await _claim(store, "fp-b", hours=1 / 60) == IdempotencyClaim(ClaimStatus.MISMATCH)


async def test_a_claim_left_in_flight_by_a_dead_request_is_interrupted_never_taken_over(
    store: SqlIdempotencyStore,
) -> None:
    # The request that died may have refunded or charged at PayTabs first: taken over after
    # its lease, the retry did it a second time (an outside run, kill -9 of both workers).
    assert await _claim(store) == IdempotencyClaim(ClaimStatus.NEW)
    assert await _claim(store, hours=1.9 / 60) == IdempotencyClaim(ClaimStatus.IN_FLIGHT)
    interrupted = IdempotencyClaim(ClaimStatus.INTERRUPTED)
    assert await _claim(store, hours=2.1 / 60) == interrupted
    assert await _claim(store, hours=23) == interrupted
    now = T0 + timedelta(hours=23)
    assert await store.find(SCOPE, "k1", "fp-a", now=now) == interrupted
    assert await _claim(store, "fp-b", hours=23) == IdempotencyClaim(ClaimStatus.MISMATCH)
    # Once the key has lived its day, it is free like any other.
    assert await _claim(store, hours=24.1) == IdempotencyClaim(ClaimStatus.NEW)


async def test_a_completed_key_is_never_taken_over_before_it_expires(
    store: SqlIdempotencyStore,
) -> None:
    assert await _claim(store) == IdempotencyClaim(ClaimStatus.NEW)
    await store.complete(SCOPE, "k1", CREATED, now=T0)
    assert await _claim(store, hours=23) == IdempotencyClaim(ClaimStatus.COMPLETED, CREATED)


async def test_a_completed_key_replays_its_response_to_the_same_request_only(
    store: SqlIdempotencyStore,
) -> None:
    await _claim(store)
    await store.complete(SCOPE, "k1", CREATED, now=T0 + timedelta(seconds=2))
    assert await _claim(store, hours=23) == IdempotencyClaim(ClaimStatus.COMPLETED, CREATED)
    assert await _claim(store, "fp-b", hours=23) == IdempotencyClaim(ClaimStatus.MISMATCH)
    await store.release(SCOPE, "k1")  # only in-flight keys are released
    assert await _claim(store, hours=23) == IdempotencyClaim(ClaimStatus.COMPLETED, CREATED)


async def test_an_expired_key_is_taken_over_by_any_request(store: SqlIdempotencyStore) -> None:
    await _claim(store)
    await store.complete(SCOPE, "k1", CREATED, now=T0)
    assert await _claim(store, "fp-b", hours=24) == IdempotencyClaim(ClaimStatus.NEW)
    later = 24 + 1 / 60
    assert await _claim(store, "fp-b", hours=later) == IdempotencyClaim(ClaimStatus.IN_FLIGHT)
    assert await _claim(store, "fp-a", hours=later) == IdempotencyClaim(ClaimStatus.MISMATCH)


async def test_a_released_key_can_be_claimed_again(store: SqlIdempotencyStore) -> None:
    await _claim(store)
    await store.release(SCOPE, "k1")
    assert await _claim(store, "fp-b") == IdempotencyClaim(ClaimStatus.NEW)


async def test_keys_are_scoped(store: SqlIdempotencyStore) -> None:
    await _claim(store)
    other = await store.claim("refunds:client-1", "k1", "fp-z", now=T0, ttl_seconds=DAY)
    assert other == IdempotencyClaim(ClaimStatus.NEW)


async def test_purge_removes_expired_keys_only(store: SqlIdempotencyStore) -> None:
    await _claim(store, key="old")
    await _claim(store, key="young", hours=12)
    await store.complete(SCOPE, "young", CREATED, now=T0 + timedelta(hours=12))
    assert await store.purge_expired(now=T0 + timedelta(hours=30)) == 1
    young = await _claim(store, key="young", hours=30)
    assert young == IdempotencyClaim(ClaimStatus.COMPLETED, CREATED)
    assert await _claim(store, "fp-b", key="old", hours=30) == IdempotencyClaim(ClaimStatus.NEW)


async def test_a_ttl_under_a_day_is_refused(store: SqlIdempotencyStore) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await store.claim(SCOPE, "k1", "fp-a", now=T0, ttl_seconds=3600)


async def test_ten_concurrent_claims_of_one_key_have_one_winner(
    store: SqlIdempotencyStore,
) -> None:
    claims: list[ClaimStatus] = []

    async def claim() -> None:
        claims.append((await _claim(store)).status)

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(claim)
    assert sorted(claims) == sorted([ClaimStatus.NEW] + [ClaimStatus.IN_FLIGHT] * 9)


async def test_ten_concurrent_takeovers_of_an_expired_key_have_one_winner(
    store: SqlIdempotencyStore,
) -> None:
    await _claim(store)
    claims: list[ClaimStatus] = []

    async def claim(fingerprint: str) -> None:
        claims.append((await _claim(store, fingerprint, hours=48)).status)

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(claim, "fp-new")
    assert sorted(claims) == sorted([ClaimStatus.NEW] + [ClaimStatus.IN_FLIGHT] * 9)


async def test_find_reads_what_a_key_holds_without_claiming_it(
    store: SqlIdempotencyStore,
) -> None:
    now = T0 + timedelta(minutes=1)
    assert await store.find(SCOPE, "k1", "fp-a", now=now) is None
    assert await store.find(SCOPE, "k1", "fp-a", now=now) is None  # reading never claimed it
    assert await _claim(store) == IdempotencyClaim(ClaimStatus.NEW)
    assert await store.find(SCOPE, "k1", "fp-a", now=now) == IdempotencyClaim(ClaimStatus.IN_FLIGHT)
    await store.complete(SCOPE, "k1", CREATED, now=T0)
    found = await store.find(SCOPE, "k1", "fp-a", now=now)
    assert found == IdempotencyClaim(ClaimStatus.COMPLETED, CREATED)
    assert await store.find(SCOPE, "k1", "fp-b", now=now) == IdempotencyClaim(ClaimStatus.MISMATCH)
    assert await store.find(SCOPE, "k1", "fp-a", now=T0 + timedelta(hours=25)) is None  # expired
