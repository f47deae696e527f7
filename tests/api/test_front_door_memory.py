"""Oversized merchant API bodies do not grow a real ``serve`` worker's memory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paytabs_guard.entrypoints.serve import free_port

from .front_door_support import send_chunked_unfinished, send_raw

pytestmark = pytest.mark.anyio

KEY = "front-door-memory-key-01"
ROUNDS = 100
ALLOWED_GROWTH_BYTES = 10 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """``paytabs-guard serve`` with one worker (the CLI process itself serves)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read a process's memory")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYTABS_", "REDIS_URL"))}
    env |= {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "API_KEYS": KEY,
        "PAYTABS_PROFILE_ID": "987654",
        "PAYTABS_SERVER_KEY": "server-key-not-used-here",
        "PAYTABS_BASE_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "paytabs_guard.entrypoints.cli", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _ready(url: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=url, timeout=1) as client:
        while True:
            try:
                if (await client.get("/livez")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            await asyncio.sleep(0.1)


async def _attack(url: str, rounds: int) -> None:
    headers = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {KEY}"}
    for _ in range(rounds):
        declared = await send_raw(
            url, "POST", "/payments/v2/create", headers | {"Content-Length": str(400 << 20)}
        )
        assert declared.status == 401
        cut = await send_chunked_unfinished(
            url, "/payments/v2/create", headers | auth, total=4 << 20, chunk=65536
        )
        assert cut.status == 413


async def test_100_oversized_requests_leave_worker_memory_flat(serve: tuple[str, int]) -> None:
    url, pid = serve
    await _ready(url)
    await _attack(url, 10)  # warm-up: first-use allocations are not growth
    before = rss_bytes(pid)
    await _attack(url, ROUNDS)
    after = rss_bytes(pid)
    growth = after - before
    print(f"worker RSS before {before >> 10} KiB, after {after >> 10} KiB, growth {growth} B")
    assert growth < ALLOWED_GROWTH_BYTES, f"worker memory grew by {growth} bytes"
