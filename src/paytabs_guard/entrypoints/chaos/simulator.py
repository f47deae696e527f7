"""The PayTabs simulator for the chaos benchmark: in this process, or in a child process.

Either way it is reached over loopback HTTP and driven through its ``/_sim`` API (reset, faults,
transactions, stats), so the benchmark's code path is the same in both layouts. A child process
gets its own core on a 2-core machine; in-process, it shares the service's event loop.

``python -m paytabs_guard.entrypoints.chaos.simulator --seed N --callback-delays 1,2,4`` is the
child: it prints its base URL on the first line of stdout and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import httpx

from paytabs_simulator.config import DEFAULT_SERVER_KEY, SimulatorConfig
from paytabs_simulator.server import run_simulator

PROFILE_ID: Final = 987654
SERVER_KEY: Final = DEFAULT_SERVER_KEY
START_SECONDS: Final = 20.0
T = TypeVar("T")


def simulator_config(seed: int, callback_delays: Sequence[float]) -> SimulatorConfig:
    return SimulatorConfig(
        seed=seed,
        callback_retry_delays=tuple(callback_delays),
        callback_timeout_seconds=10.0,
    )


class Simulator:
    """A running simulator, driven over HTTP."""

    def __init__(self, base_url: str, layout: str, pid: int | None = None) -> None:
        self.base_url = base_url
        self.layout = layout
        self.pid = pid
        """The child's process id; None when the simulator runs in this process."""
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=30.0,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def reset(self, faults: dict[str, Any]) -> None:
        """Forget everything (the outage clock restarts), then set ``faults``."""
        (await self.http.post("/_sim/reset")).raise_for_status()
        (await self.http.put("/_sim/faults", json=faults)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self.http.put("/_sim/faults", json={})).raise_for_status()

    async def transactions(self) -> list[dict[str, Any]]:
        response = await self.http.get("/_sim/transactions")
        response.raise_for_status()
        return list(response.json())

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/_sim/stats")
        response.raise_for_status()
        return dict(response.json())

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the child used so far; None in-process."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1]
        except OSError:
            return None
        parts = fields.split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    async def pay(self, page_id: str, card: str) -> httpx.Response:
        return await self.http.post(f"/_sim/pages/{page_id}/pay", json={"card_number": card})


@contextlib.asynccontextmanager
async def start(
    layout: str, seed: int, callback_delays: Sequence[float], *, log: Path | None = None
) -> AsyncIterator[Simulator]:
    """A simulator in ``layout`` ``"process"`` (a child) or ``"inprocess"`` (this event loop).

    The child's stderr (uvicorn's tracebacks for requests whose client gave up while a fault
    held them) goes to ``log``, or nowhere.
    """
    if layout == "inprocess":
        async with run_simulator(simulator_config(seed, callback_delays)) as running:
            simulator = Simulator(running.base_url, layout)
            try:
                yield simulator
            finally:
                await simulator.aclose()
        return
    if layout != "process":
        raise ValueError(f"unknown simulator layout {layout!r}")
    delays = ",".join(f"{delay:g}" for delay in callback_delays)
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("w", encoding="utf-8")) if log else None
        child = await _spawn(delays, seed, stderr)
    try:
        base_url = await asyncio.wait_for(_first_line(child), timeout=START_SECONDS)
        simulator = Simulator(base_url, layout, child.pid)
        try:
            await _wait_healthy(simulator)
            yield simulator
        finally:
            await simulator.aclose()
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), timeout=10)
            except TimeoutError:
                child.kill()
                await child.wait()


async def _spawn(delays: str, seed: int, stderr: IO[str] | None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        "--seed",
        str(seed),
        "--callback-delays",
        delays,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
    )


async def _first_line(child: asyncio.subprocess.Process) -> str:
    line = (await child.stdout.readline()).decode().strip() if child.stdout else ""
    if not line.startswith("http://"):
        raise RuntimeError(f"the simulator did not start (exit code {child.returncode})")
    return line


async def _wait_healthy(simulator: Simulator) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (await simulator.http.get("/_sim/health")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the simulator did not answer in time")
        await asyncio.sleep(0.05)


# ---- the child process ----------------------------------------------------------------------


async def _serve(seed: int, callback_delays: Sequence[float]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with run_simulator(simulator_config(seed, callback_delays)) as running:
        print(running.base_url, flush=True)
        await stop.wait()


def child_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the chaos benchmark's simulator process")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--callback-delays", required=True)
    args = parser.parse_args(argv)
    delays = [float(part) for part in str(args.callback_delays).split(",") if part]
    run_loop(_serve(int(args.seed), delays))


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed, as ``paytabs-guard serve`` runs the service
    (the standard loop otherwise): the benchmark measures the event loop production uses."""
    if importlib.util.find_spec("uvloop") is None:
        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)


def event_loop_name() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


if __name__ == "__main__":
    child_main()
