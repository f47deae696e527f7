"""Shared fixtures: the asyncio backend, and real PostgreSQL and Redis when they are reachable.

Tests that need a service skip when it is absent, unless REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest

pytest_plugins = ["testkit.timeouts", "testkit.transports"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_missing(what: str, error: BaseException) -> None:
    """Skip the test, or fail it when the run requires every service."""
    message = f"{what} is not reachable: {error!r}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test (asyncpg URL), dropped afterwards."""
    import asyncpg

    admin_dsn = TEST_DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"ptg_test_{secrets.token_hex(6)}"
    try:
        conn = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        service_missing("PostgreSQL", error)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        conn = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so parallel runs never collide."""
    return f"ptg-test:{secrets.token_hex(6)}:"


@pytest.fixture
async def redis_url(redis_prefix: str) -> AsyncIterator[str]:
    """The test Redis URL, checked reachable; keys under ``redis_prefix`` are deleted afterwards."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as error:
        await client.aclose()
        service_missing("Redis", error)
    try:
        yield TEST_REDIS_URL
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
