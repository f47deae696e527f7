"""A database that answers reads but refuses writes fails readiness (docs/operations.md,
"Readiness"): PostgreSQL left on a read-only server after a failover, a SQLite file that can no
longer be written. Readiness pinged with ``SELECT 1`` and stayed ``pass`` while every create
answered 503."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_simulator.server import RunningSimulator

from .api_support import Service, new_key, running_service

pytestmark = pytest.mark.anyio


class ReadOnlyDatabase:
    """The service's database refuses writes from now on, as in production. PostgreSQL: the
    database is set read-only (a standby after a failover says the same: "cannot execute
    INSERT in a read-only transaction") and the pool's connections are replaced. SQLite: the
    file and its WAL are made immutable (``chattr +i``, which binds root too, unlike chmod),
    as the auditor did: reads and ``BEGIN IMMEDIATE`` still work, commits fail."""

    def __init__(self, engine: AsyncEngine, files: list[Path]) -> None:
        self._engine = engine
        self._files = files

    async def _alter(self, setting: str) -> None:
        url = self._engine.url
        connection = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, database="postgres"
        )
        try:
            await connection.execute(f'ALTER DATABASE "{url.database}" {setting}')
        finally:
            await connection.close()

    def _chattr(self, flag: str) -> None:
        subprocess.run(["chattr", flag, *map(str, self._files)], check=True)  # noqa: S603, S607

    async def start(self) -> None:
        if self._engine.dialect.name == "postgresql":
            await self._alter("SET default_transaction_read_only = on")
            await self._engine.dispose()  # the pooled connections were opened writable
            return
        try:
            self._chattr("+i")
        except (OSError, subprocess.CalledProcessError) as error:
            pytest.skip(f"cannot make the SQLite file immutable here (root, chattr): {error}")

    async def stop(self) -> None:
        if self._engine.dialect.name == "postgresql":
            # The pool's sessions, opened read-only, stay so: the service must replace them
            # itself (a verification audit saw writes refused until a restart).
            await self._alter("RESET default_transaction_read_only")
        else:
            self._chattr("-i")


def _read_only(service: Service, tmp_path: Path) -> ReadOnlyDatabase:
    # Not the -shm: an immutable memory-mapped -shm kills the process with SIGBUS.
    files = [tmp_path / "service.db", tmp_path / "service.db-wal"]
    return ReadOnlyDatabase(service.container.engine, files)


async def _create(service: Service) -> Any:
    return await service.api.post(
        "/payments/v2/create",
        json={"amount": "5.00", "currency": "SAR", "description": "Order 7"},
        headers={"Idempotency-Key": new_key()},
    )


def _database_check(document: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = document["checks"]["database:responseTime"][0]
    return entry


async def test_a_database_that_refuses_writes_fails_readiness_until_it_takes_them_again(
    sim: RunningSimulator, database_url: str, captured: io.StringIO, tmp_path: Path
) -> None:
    async with running_service(sim, database_url) as service:
        await service.create()
        read_only = _read_only(service, tmp_path)
        await read_only.start()
        try:
            for _ in range(3):
                refused = await _create(service)
                # PostgreSQL's "read-only transaction" error was a 500 internal_error.
                assert refused.status_code == 503, refused.text
                assert refused.json()["type"].endswith("/storage-unavailable")
            for path in ("/readyz", "/payments/v2/health"):
                answer = await service.anonymous.get(path)
                assert answer.status_code == 503, (path, answer.text)
                check = _database_check(answer.json())
                assert check["status"] == "fail"
                assert check["output"].startswith("refuses writes: ")
            scraped = (await service.anonymous.get("/metrics")).text
            assert 'paytabs_guard_dependency_up{dependency="database"} 0.0' in scraped
        finally:
            await read_only.stop()
        # Out of the load balancer, no request would come to show that writes work again:
        # readiness itself finds out, without a create.
        ready = await service.anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert _database_check(ready.json())["status"] == "pass"
        scraped = (await service.anonymous.get("/metrics")).text
        assert 'paytabs_guard_dependency_up{dependency="database"} 1.0' in scraped
        await service.create()
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    said = [(line["level"], line["event"]) for line in lines if "database writes" in line["event"]]
    # Once when it starts (not per refused create or readiness call), once when it ends.
    assert said == [
        ("warning", "database writes failing"),
        ("warning", "database writes succeed again"),
    ]


async def test_one_failed_write_on_a_database_that_takes_writes_keeps_readiness(
    sim: RunningSimulator, sqlite_url: str, tmp_path: Path
) -> None:
    # A blip (a cut connection, a pool timeout) shared by every instance must not take them
    # all out of the load balancer: readiness asks the database before it fails.
    async with running_service(sim, sqlite_url) as service:
        await service.create()
        read_only = _read_only(service, tmp_path)
        await read_only.start()
        assert (await _create(service)).status_code == 503
        await read_only.stop()
        ready = await service.anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert service.container.write_health.failure is None


@pytest.mark.postgres
async def test_a_postgres_that_refuses_writes_is_not_ready_before_any_write_fails(
    sim: RunningSimulator, postgres_url: str, tmp_path: Path
) -> None:
    # An instance (re)started on a read-only server, say the old primary after a failover, must
    # not report ready until a merchant's create fails: on PostgreSQL the probe is one read,
    # so readiness always asks.
    async with running_service(sim, postgres_url) as service:
        read_only = _read_only(service, tmp_path)
        await read_only.start()
        try:
            answer = await service.anonymous.get("/readyz")
            assert answer.status_code == 503, answer.text
            assert _database_check(answer.json())["output"].startswith("refuses writes: ")
        finally:
            await read_only.stop()
        assert (await service.anonymous.get("/readyz")).status_code == 200
        await service.create()
