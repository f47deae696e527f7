"""Datastores and small helpers for ``bench load``: a throw-away PostgreSQL database, Redis
reachability and clean-up, free ports, the machine's description."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.engine import make_url

from paytabs_guard.entrypoints.serve import http_stack


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _admin_dsn(url: str) -> str:
    """asyncpg's own DSN for the SQLAlchemy URL ``url`` (its query, a Unix socket's ``host``
    or ``ssl``, kept)."""
    return _with(url, "postgresql")


def _with(url: str, drivername: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername=drivername)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def database_name(url: str) -> str | None:
    """The database a SQLAlchemy URL names."""
    return make_url(url).database


async def postgres_reachable(url: str) -> str | None:
    """None when PostgreSQL at ``url`` answers, else why not."""
    import asyncpg

    try:
        connection = await asyncpg.connect(_admin_dsn(url), timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        return repr(error)
    await connection.close()
    return None


@contextlib.asynccontextmanager
async def postgres_database(url: str) -> AsyncIterator[str]:
    """A fresh database on the server of ``url`` (an asyncpg SQLAlchemy URL), dropped after."""
    import asyncpg

    admin = _admin_dsn(url)
    name = f"ptg_bench_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(admin, timeout=5)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        yield _with(url, "postgresql+asyncpg", name)
    finally:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


async def redis_reachable(url: str) -> str | None:
    """None when Redis at ``url`` answers PING, else why not."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as error:
        return repr(error)
    finally:
        await client.aclose()
    return None


async def remove_redis_keys(url: str, prefix: str) -> int:
    """Delete the keys under ``prefix`` (what a benchmark's service left behind)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


def machine() -> dict[str, object]:
    """nproc, the CPU model, the kernel and the Python that ran the benchmark."""
    model = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(
            ["lscpu"],  # noqa: S607 - a fixed, read-only system tool
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout
        for line in listing.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "http_stack": http_stack(),
    }
