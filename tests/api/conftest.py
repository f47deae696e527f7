"""Fixtures: a simulator, a database (SQLite; PostgreSQL too where a test asks for it) and the
service over real HTTP between them."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from paytabs_guard.observability import json_formatter
from paytabs_simulator.server import RunningSimulator, run_simulator

from .api_support import (
    ADMIN_KEY,
    API_KEY,
    SERVER_KEY,
    Service,
    running_service,
    simulator_config,
)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def shared_sim() -> AsyncIterator[RunningSimulator]:
    """One simulator for the whole run: starting one per test would double the suite's time."""
    async with run_simulator(simulator_config(seed=7)) as running:
        yield running


@pytest.fixture
async def sim(shared_sim: RunningSimulator) -> AsyncIterator[RunningSimulator]:
    """The shared simulator, with its faults back to none after the test."""
    try:
        yield shared_sim
    finally:
        # Forget everything, cancel callbacks still retrying, and clear the faults.
        await shared_sim.engine.reset()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Both databases: for the core flows."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return sqlite_url


@pytest.fixture
async def service(sim: RunningSimulator, sqlite_url: str) -> AsyncIterator[Service]:
    """The service on SQLite."""
    async with running_service(sim, sqlite_url) as running:
        yield running


@pytest.fixture
async def any_service(sim: RunningSimulator, database_url: str) -> AsyncIterator[Service]:
    """The service on SQLite, then on PostgreSQL."""
    async with running_service(sim, database_url) as running:
        yield running


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Our loggers (and uvicorn's) into a buffer, through the production formatter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter(secrets=[SERVER_KEY, API_KEY, ADMIN_KEY]))
    loggers = [logging.getLogger(name) for name in ("paytabs_guard", "uvicorn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
