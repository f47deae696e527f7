"""The merchants (the :class:`~.driver.Driver`) in a process of their own, or in this one.

Real merchants are other machines: their HTTP clients do not share the service's event loop or
its core. In one process they do, and in an outage several hundred turned-away merchants coming
back at once put their own client work in front of the service's 503s, so fail-fast times and
the first page after a recovery measured the harness, not the breaker. In the ``process`` layout
the driver runs in a child; the service, its relay and the benchmark's event subscriber stay
here, and the two talk over the child's pipes:

- here → child: ``run <json>`` per run (service URLs, API key, simulator URL, budgets,
  schedule, start time); during it, one line ``completed <payment id>`` per
  ``payment.completed`` the subscriber receives (what a merchant's webhook endpoint would be
  told);
- child → here: ``ready`` once imported; per run, ``progress`` per finished order, then
  ``result <json>`` with every order and create call. It exits when its stdin closes.

One child serves every run of a benchmark (:func:`merchants_process`): starting a Python
process and importing the driver takes about a second, twenty times in a short run.

Start times need no translation: ``time.monotonic()`` reads CLOCK_MONOTONIC, one clock for every
process on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

from .cores import Cores
from .driver import Budgets, CompletionWaiters, CreateCall, Driver, Order
from .simulator import Simulator, run_loop

LAYOUTS: Final = ("process", "inprocess")
START_SECONDS: Final = 30.0
LINE_LIMIT: Final = 256 * 1024 * 1024
"""The result line carries every order of a run (a few MB in full mode)."""


@dataclass(frozen=True, slots=True)
class MerchantRun:
    """Who the merchants talk to and how patient they are: what both layouts build a driver
    from (the child gets it as JSON)."""

    service_urls: tuple[str, ...]
    api_key: str
    simulator_url: str
    budgets: Budgets
    prefer_wait: bool

    def driver(
        self,
        simulator: Simulator,
        waiters: CompletionWaiters,
        on_progress: Callable[[], None] | None,
    ) -> Driver:
        return Driver(
            service_urls=self.service_urls,
            api_key=self.api_key,
            simulator=simulator,
            waiters=waiters,
            budgets=self.budgets,
            on_progress=on_progress,
            prefer_wait=self.prefer_wait,
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "service_urls": list(self.service_urls)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MerchantRun:
        return cls(
            service_urls=tuple(str(url) for url in data["service_urls"]),
            api_key=str(data["api_key"]),
            simulator_url=str(data["simulator_url"]),
            budgets=Budgets(**data["budgets"]),
            prefer_wait=bool(data["prefer_wait"]),
        )


class Merchants(Protocol):
    """What the benchmark needs from its merchants, wherever they run."""

    orders: list[Order]
    creates: list[CreateCall]
    cpu_seconds: float | None
    """CPU the merchants' own process used for the run; None when they share this one."""

    def completed(self, payment_id: str) -> None:
        """The service emitted ``payment.completed`` for ``payment_id``."""

    async def run(self, schedule: list[tuple[float, str]], t0: float) -> None:
        """Every order at its time (``t0`` on ``time.monotonic()``); return when all ended."""


class InProcess:
    """The driver on this event loop (tests, and a comparison with the old layout)."""

    def __init__(self, driver: Driver, waiters: CompletionWaiters) -> None:
        self._driver = driver
        self._waiters = waiters
        self.orders: list[Order] = []
        self.creates: list[CreateCall] = []
        self.cpu_seconds: float | None = None

    def completed(self, payment_id: str) -> None:
        self._waiters.completed(payment_id)

    async def run(self, schedule: list[tuple[float, str]], t0: float) -> None:
        await self._driver.run(schedule, t0)
        self.orders, self.creates = self._driver.orders, self._driver.creates


class ChildProcess:
    """The driver in a child process, fed over its stdin and read from its stdout."""

    def __init__(
        self,
        child: asyncio.subprocess.Process,
        spec: MerchantRun,
        on_progress: Callable[[], None] | None,
    ) -> None:
        self._child = child
        self._spec = spec
        self._on_progress = on_progress
        self.orders: list[Order] = []
        self.creates: list[CreateCall] = []
        self.cpu_seconds: float | None = None

    def completed(self, payment_id: str) -> None:
        stdin = self._child.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(f"completed {payment_id}\n".encode())

    async def run(self, schedule: list[tuple[float, str]], t0: float) -> None:
        stdin, stdout = self._child.stdin, self._child.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the merchants' process has no pipes")
        run = {**self._spec.to_json(), "schedule": schedule, "t0": t0}
        stdin.write(b"run " + json.dumps(run).encode() + b"\n")
        await stdin.drain()
        while line := await stdout.readline():
            kind, _, rest = line.decode().rstrip("\n").partition(" ")
            if kind == "progress":
                if self._on_progress is not None:
                    self._on_progress()
            elif kind == "result":
                result = json.loads(rest)
                self.orders = [Order(**order) for order in result["orders"]]
                self.creates = [CreateCall(**call) for call in result["creates"]]
                self.cpu_seconds = float(result["cpu_seconds"])
                return
        raise RuntimeError(
            f"the merchants' process ended early (exit code {self._child.returncode})"
        )


@contextlib.asynccontextmanager
async def merchants(
    layout: str,
    *,
    service_urls: Sequence[str],
    api_key: str,
    simulator: Simulator,
    budgets: Budgets,
    prefer_wait: bool,
    on_progress: Callable[[], None] | None = None,
    cores: Cores | None = None,
    child: asyncio.subprocess.Process | None = None,
) -> AsyncIterator[Merchants]:
    """The merchants of one run in ``layout``: in ``child`` (from :func:`merchants_process`)
    when given, else in a child started (and ready) on entry and stopped on exit."""
    spec = MerchantRun(tuple(service_urls), api_key, simulator.base_url, budgets, prefer_wait)
    if layout == "inprocess":
        waiters = CompletionWaiters()
        yield InProcess(spec.driver(simulator, waiters, on_progress), waiters)
        return
    if layout != "process":
        raise ValueError(f"unknown merchants layout {layout!r}")
    if child is not None:
        yield ChildProcess(child, spec, on_progress)
        return
    async with merchants_process(cores) as started:
        yield ChildProcess(started, spec, on_progress)


@contextlib.asynccontextmanager
async def merchants_process(
    cores: Cores | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A merchants' child process, ready for runs; its stdin is closed (and it ends) on exit."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    if cores is not None:
        cores.pin_other(child.pid)
    try:
        ready = (
            await asyncio.wait_for(child.stdout.readline(), START_SECONDS) if child.stdout else b""
        )
        if ready.strip() != b"ready":
            raise RuntimeError(f"the merchants' process did not start (exit {child.returncode})")
        yield child
    finally:
        if child.stdin is not None and not child.stdin.is_closing():
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), timeout=10)
        except TimeoutError:
            child.kill()
            await child.wait()


# ---- the child process ----------------------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _child() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _say("ready")
    runs: asyncio.Queue[tuple[dict[str, Any], CompletionWaiters] | None] = asyncio.Queue()

    async def listen() -> None:
        # The latest run's waiters, swapped here, in line order: a ``completed`` line is the
        # service's event for one of the run sent before it (one that comes late from an
        # earlier run names a payment nobody waits for).
        waiters = CompletionWaiters()
        try:
            while line := await reader.readline():
                kind, _, rest = line.decode().rstrip("\n").partition(" ")
                if kind == "completed":
                    waiters.completed(rest.strip())
                elif kind == "run":
                    waiters = CompletionWaiters()
                    runs.put_nowait((json.loads(rest), waiters))
        finally:
            runs.put_nowait(None)  # stdin closed: the benchmark is over

    listening = asyncio.create_task(listen())
    try:
        while (next_run := await runs.get()) is not None:
            await _one_run(*next_run)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def _one_run(run: dict[str, Any], waiters: CompletionWaiters) -> None:
    spec = MerchantRun.from_json(run)
    cpu_before = time.process_time()
    simulator = Simulator(spec.simulator_url, "process")
    try:
        driver = spec.driver(simulator, waiters, lambda: _say("progress"))
        schedule = [(float(at), str(amount)) for at, amount in run["schedule"]]
        await driver.run(schedule, float(run["t0"]))
        result = {
            "orders": [asdict(order) for order in driver.orders],
            "creates": [asdict(call) for call in driver.creates],
            "cpu_seconds": time.process_time() - cpu_before,
        }
        _say("result " + json.dumps(result))
    finally:
        await simulator.aclose()


if __name__ == "__main__":
    run_loop(_child())
