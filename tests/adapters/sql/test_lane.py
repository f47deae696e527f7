"""The lane (``lane.py``): a few of the pool's connections kept between statements sent alone,
on a real PostgreSQL. What it must never do: keep more than its size, keep a connection whose
statement failed, hand out one that sat idle without the pool's ping, or leave a session open
once the engine is disposed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Integer, String, bindparam, literal, literal_column, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql.compiled import fetch_one_alone
from paytabs_guard.adapters.sql.engine import RETURNED_AT, create_engine
from paytabs_guard.adapters.sql.lane import LANE_SIZE, Lane, lane_of
from paytabs_guard.bootstrap import STORAGE_UNAVAILABLE

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

BACKEND = select(literal_column("pg_backend_pid()", Integer))
INVERSE = select(literal(2, Integer) // bindparam("n", type_=Integer))  # n = 0: division by zero
SLEEP = select(literal_column("pg_sleep(5)::text", String))


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def checked_out(engine: AsyncEngine) -> int:
    pool: object = engine.sync_engine.pool
    count = pool.checkedout()  # type: ignore[attr-defined]
    assert isinstance(count, int)
    return count


async def sessions(url: str) -> int:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(url.rsplit("/", 1)[0].replace("+asyncpg", "") + "/postgres")
    try:
        count = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
        )
    finally:
        await admin.close()
    assert isinstance(count, int)
    return count


async def test_statements_one_after_another_share_one_kept_connection(
    engine: AsyncEngine,
) -> None:
    backends = {(await fetch_one_alone(engine, BACKEND, {}))[0] for _ in range(10)}
    assert len(backends) == 1
    assert lane_of(engine).kept == 1
    assert checked_out(engine) == 1  # the kept one; nothing else left checked out


async def test_the_lane_keeps_at_most_its_size_and_the_rest_go_back_to_the_pool(
    engine: AsyncEngine,
) -> None:
    await asyncio.gather(*(fetch_one_alone(engine, BACKEND, {}) for _ in range(12)))
    assert lane_of(engine).kept == LANE_SIZE
    assert checked_out(engine) == LANE_SIZE


async def test_a_failed_statement_gives_its_connection_back_to_the_pool(
    engine: AsyncEngine,
) -> None:
    await fetch_one_alone(engine, INVERSE, {"n": 1})
    assert lane_of(engine).kept == 1
    with pytest.raises(DBAPIError, match="division by zero"):
        await fetch_one_alone(engine, INVERSE, {"n": 0})
    assert lane_of(engine).kept == 0
    assert checked_out(engine) == 0
    assert (await fetch_one_alone(engine, INVERSE, {"n": 1}))[0] == 2


async def test_a_statement_past_its_timeout_is_a_timeout_and_its_connection_is_dropped(
    postgres_url: str,
) -> None:
    # A server that cannot be heard: asyncpg's command timeout fires. It must reach the API
    # as TimeoutError (503 storage-unavailable), as through SQLAlchemy's execute, not as a
    # StatementError around it (a 500); and the connection, with a statement maybe still
    # running on it, is closed rather than kept or pooled.
    engine = create_engine(postgres_url, statement_timeout_seconds=0.05)
    try:
        before = (await fetch_one_alone(engine, BACKEND, {}))[0]
        with pytest.raises(TimeoutError) as raised:
            await fetch_one_alone(engine, SLEEP, {})
        assert isinstance(raised.value, STORAGE_UNAVAILABLE)
        assert lane_of(engine).kept == 0
        assert checked_out(engine) == 0
        assert (await fetch_one_alone(engine, BACKEND, {}))[0] != before
    finally:
        await engine.dispose()


async def test_a_cancelled_statement_gives_its_connection_back_to_the_pool(
    engine: AsyncEngine,
) -> None:
    await fetch_one_alone(engine, BACKEND, {})
    sleeping = asyncio.ensure_future(fetch_one_alone(engine, SLEEP, {}))
    for _ in range(50):  # until the statement is out (no wall-clock wait)
        await asyncio.sleep(0)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    assert lane_of(engine).kept == 0
    assert (await fetch_one_alone(engine, INVERSE, {"n": 2}))[0] == 1


async def test_an_idle_connection_goes_back_to_the_pool_as_idle_since_its_last_use(
    engine: AsyncEngine,
) -> None:
    now = [1000.0]
    lane = Lane(size=2, idle_seconds=5.0, clock=lambda: now[0])
    connection = await lane.take(engine)
    info = connection.info
    await lane.give_back(connection, healthy=True)
    assert lane.kept == 1
    now[0] += 6.0
    again = await lane.take(engine)  # the kept one is stale: to the pool, then from it
    # Back-dated to its last use, so the pool's idle ping counts the time it sat in the lane.
    assert info[RETURNED_AT] == 1000.0
    assert lane.kept == 1
    await lane.give_back(again, healthy=False)
    assert lane.kept == 0
    assert checked_out(engine) == 0


async def test_disposing_of_the_engine_closes_what_the_lane_keeps(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    await asyncio.gather(*(fetch_one_alone(engine, BACKEND, {}) for _ in range(8)))
    assert lane_of(engine).kept == LANE_SIZE
    assert await sessions(postgres_url) >= LANE_SIZE
    await engine.dispose()
    assert await sessions(postgres_url) == 0
    # The engine still works after it (a new pool, a new lane).
    assert (await fetch_one_alone(engine, INVERSE, {"n": 1}))[0] == 2
    await engine.dispose()
    assert await sessions(postgres_url) == 0


async def test_a_small_pool_keeps_its_connections_for_transactions(postgres_url: str) -> None:
    # A quarter of the pool at most: with three connections, a lane keeping one would leave a
    # transaction and the statements beside it two; a pool of one would have none left.
    engine = create_engine(postgres_url, pool_size=3)
    try:
        await asyncio.gather(*(fetch_one_alone(engine, BACKEND, {}) for _ in range(6)))
        assert lane_of(engine).kept == 0
        assert checked_out(engine) == 0
    finally:
        await engine.dispose()
