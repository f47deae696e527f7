"""Processes of ``bench load``: start servers as real subprocesses, wait until they answer, read
their CPU time and resident memory from ``/proc``, stop them.

Every process is started in a session of its own, so stopping it (SIGTERM, then SIGKILL to that
process group after a grace period) ends exactly what the benchmark started and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import httpx

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
START_TIMEOUT_SECONDS: Final = 90.0
STOP_TIMEOUT_SECONDS: Final = 30.0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one live process (0 once it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of one live process (0 once it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * PAGE_SIZE


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def postgres_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each live PostgreSQL backend serving ``database`` (their command line,
    ``postgres: user database host(port) state``, names it)."""
    found = {}
    needle = f" {database} "
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            line = command_line(int(entry.name))
            if line.startswith("postgres:") and needle in line:
                found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass
class Server:
    """A server we started: a uvicorn process, or a supervisor with worker children."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        """The processes that serve requests: the spawned workers under a supervisor, else
        the process itself (uvicorn serves in-process with one worker)."""
        spawned = [p for p in children(self.pid) if "spawn_main" in command_line(p)]
        return spawned or [self.pid]

    def all_pids(self) -> list[int]:
        return [self.pid, *children(self.pid)]

    def cpu_seconds(self) -> dict[int, float]:
        """CPU seconds of each of its processes (the supervisor and the workers)."""
        return {pid: cpu_seconds(pid) for pid in self.all_pids()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


async def start_server(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    ready_path: str,
    expect_workers: int = 1,
) -> Server:
    """Start ``argv`` (a Python module run by this interpreter) and wait until ``ready_path``
    answers 200 and, with several workers, every worker is up. Output goes to ``cwd/name.log``."""
    server = _spawn(name, argv, port=port, env=env, cwd=cwd)
    try:
        await _wait_ready(server, ready_path, expect_workers)
    except BaseException:
        server.stop()
        raise
    return server


def _spawn(
    name: str, argv: Sequence[str], *, port: int, env: Mapping[str, str], cwd: Path
) -> Server:
    log = (cwd / f"{name}.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules, fixed arguments
        [sys.executable, *argv],
        env={**os.environ, **env},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(name, process, port, log)


async def _wait_ready(server: Server, ready_path: str, expect_workers: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    url = f"http://127.0.0.1:{server.port}{ready_path}"
    async with httpx.AsyncClient(timeout=2.0) as client:
        ready = 0
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with code {server.process.returncode}; "
                    f"see {server.log.name}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    ready += 1
            # Several workers: each takes its own start-up (migrations, pools); ask a few times.
            if ready >= 1 and len(server.workers()) >= expect_workers and ready >= expect_workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not become ready; see {server.log.name}")
            await asyncio.sleep(0.1)
