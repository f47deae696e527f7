"""``serve --workers 2``: every scrape of ``/metrics`` counts what both workers did.

Each worker is a process of its own, and whichever takes the connection answers the scrape;
before the shared directory, Prometheus saw 2, 1, 2, 1, 2 for three creates, a counter that
"reset" at almost every scrape.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paytabs_guard.entrypoints.serve import free_port

pytestmark = pytest.mark.anyio

KEY = "metrics-workers-key-0123456789"
CREATES = 6
SCRAPES = 12


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYTABS_", "REDIS_URL"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "API_KEYS": KEY,
        "LOG_LEVEL": "warning",
        "TMPDIR": str(tmp_path),  # where serve makes the workers' metrics directory
    }
    argv = ["serve", "--port", str(port), "--workers", "2", "--simulator"]
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", *argv],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not start"
        await asyncio.sleep(0.1)


def _shared_dirs(tmp_path: Path) -> list[Path]:
    return [path for path in tmp_path.glob("paytabs-guard-metrics-*") if path.exists()]


def _creates_counted(exposition: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("paytabs_guard_http_requests_total{") and "/create" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_every_scrape_adds_up_both_workers(
    two_workers: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, process = two_workers
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"amount": "12.50", "currency": "SAR", "description": "Order 1001"}
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        await _ready(client)
        for _ in range(CREATES):
            # a new connection each: the two workers share them out between them
            async with httpx.AsyncClient(base_url=url, timeout=20) as one:
                created = await one.post(
                    "/payments/v2/create",
                    json=body,
                    headers=headers | {"Idempotency-Key": str(uuid.uuid4())},
                )
                assert created.status_code == 201, created.text

        async def scrape() -> float:
            async with httpx.AsyncClient(base_url=url, timeout=20) as one:
                return _creates_counted((await one.get("/metrics")).text)

        # A worker counts a request once its answer has gone out: a scrape sent the moment the
        # last create is answered can reach the other worker first, on a loaded machine before
        # the count is written. Once a scrape has seen it, every scrape must.
        async with asyncio.timeout(10):
            while await scrape() < CREATES:  # noqa: ASYNC110 - another process's write
                await asyncio.sleep(0.01)
        counts = [await scrape() for _ in range(SCRAPES)]
        scraped = (await client.get("/metrics")).text
    assert counts == [CREATES] * SCRAPES
    assert 'paytabs_guard_build_info{version="' in scraped
    assert 'paytabs_guard_circuit_breaker_state{breaker="create",state="closed"} 1.0' in scraped
    assert "paytabs_guard_return_line 0.0" in scraped
    assert len(_shared_dirs(tmp_path)) == 1  # the workers' directory, while they run
    process.terminate()
    process.wait(timeout=30)
    assert _shared_dirs(tmp_path) == []  # and gone with them


def test_a_worker_that_died_leaves_the_live_gauges() -> None:
    """A worker killed outright (out of memory) never marks itself dead; uvicorn starts
    another, and the dead one's files kept its breaker "open" in every scrape until serve
    restarted. A scrape now leaves out the live gauges of processes that are gone."""
    from paytabs_guard.metrics import _forget_dead_workers

    with tempfile.TemporaryDirectory() as directory:
        dead_pid = _ended_pid()
        files = {
            "dead_live": Path(directory, f"gauge_livemax_{dead_pid}.db"),
            "dead_counter": Path(directory, f"counter_{dead_pid}.db"),
            "mine": Path(directory, f"gauge_livemax_{os.getpid()}.db"),
        }
        for path in files.values():
            path.write_bytes(b"")
        _forget_dead_workers(directory)
        assert not files["dead_live"].exists()
        assert files["dead_counter"].exists()  # what it counted still counts
        assert files["mine"].exists()


def _ended_pid() -> int:
    process = subprocess.Popen(["true"])  # noqa: S607 - a process that has ended
    process.wait()
    return process.pid
