"""Benchmark: what a breaker costs per call, ours against the Python libraries.

Run ``paytabs-guard bench breaker`` (``--quick`` for a short run, ``--json PATH`` to keep the
numbers). Methodology (docs/benchmarks.md, "Method"): one process and one event
loop for every variant; each timed loop is ``for _ in range(n): await step()`` with the garbage
collector off; a warm-up pass, then rounds in which the variants take turns (the starting
variant rotates); median and minimum per variant; overhead = median minus the bare
``await noop()`` baseline's median. Open-state steps include raising and catching the library's
rejection, since that is what a caller pays. Memory: ``tracemalloc`` growth over a long run of
rejections, which exposes a library that keeps something per rejection.

The peer libraries (pybreaker, aiobreaker, purgatory, circuitbreaker) are optional; a missing
one is skipped. They are used as their documentation says to use them from asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import platform
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from paytabs_guard.resilience.breaker import CircuitBreaker
from paytabs_guard.resilience.config import BreakerConfig
from paytabs_guard.resilience.errors import CircuitOpenError

Step = Callable[[], Awaitable[object]]

_HOUR = 3600.0  # reset timeouts long enough that an open breaker stays open during the run
_MEMORY_CAP = 512 * 1024 * 1024  # stop a leaking peer's memory run here and extrapolate


class _Boom(Exception):
    """The failure used to trip breakers."""


async def _noop() -> int:
    return 1


async def _boom() -> int:
    raise _Boom


@dataclass
class Variant:
    """One contestant: a step that goes through a closed breaker and one through an open one."""

    name: str
    closed: Step
    open: Step | None = None
    note: str = ""


@dataclass
class Result:
    """Measurements of one variant (nanoseconds per call; bytes for memory)."""

    name: str
    note: str
    closed: list[float] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    memory_bytes: int | None = None
    memory_rejects: int = 0

    def summary(self, base_closed: float, base_open: float) -> dict[str, Any]:
        def describe(samples: list[float], base: float) -> dict[str, float] | None:
            if not samples:
                return None
            median = statistics.median(samples)
            return {"median_ns": median, "min_ns": min(samples), "overhead_ns": median - base}

        return {
            "name": self.name,
            "note": self.note,
            "closed": describe(self.closed, base_closed),
            "open": describe(self.open, base_open),
            "memory_bytes": self.memory_bytes,
            "memory_rejects": self.memory_rejects,
        }


# -- contestants ---------------------------------------------------------------------------------


async def _trip(step: Callable[[], Awaitable[object]], times: int = 10) -> None:
    for _ in range(times):
        with contextlib.suppress(Exception):  # failing is the point; so are rejections
            await step()


def _baseline() -> Variant:
    async def closed() -> object:
        return await _noop()

    return Variant("baseline: await noop()", closed, closed, "absolute, not overhead")


async def _ours(config: BreakerConfig, name: str, note: str) -> Variant:
    closed_breaker = CircuitBreaker("bench-closed", config)
    open_breaker = CircuitBreaker("bench-open", config)
    await _trip(lambda: open_breaker.call(_boom))
    assert open_breaker.state == "open", open_breaker.state  # noqa: S101 - sanity of the setup

    async def closed() -> object:
        return await closed_breaker.call(_noop)

    async def rejected() -> object:
        try:
            return await open_breaker.call(_noop)
        except CircuitOpenError:
            return None

    return Variant(name, closed, rejected, note)


async def _pybreaker() -> Variant:
    import pybreaker

    closed_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=_HOUR)
    open_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=_HOUR)
    open_breaker.open()

    async def closed() -> object:
        with closed_breaker.calling():
            return await _noop()

    async def rejected() -> object:
        try:
            with open_breaker.calling():
                return await _noop()
        except pybreaker.CircuitBreakerError:
            return None

    return Variant("pybreaker", closed, rejected, "with breaker.calling()")


async def _aiobreaker() -> Variant:
    import aiobreaker

    duration = timedelta(seconds=_HOUR)
    closed_breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=duration)
    open_breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=duration)
    open_breaker.open()

    async def closed() -> object:
        return await closed_breaker.call_async(_noop)

    async def rejected() -> object:
        try:
            return await open_breaker.call_async(_noop)
        except aiobreaker.CircuitBreakerError:
            return None

    return Variant("aiobreaker", closed, rejected, "await breaker.call_async(fn)")


async def _purgatory() -> Variant:
    from purgatory import AsyncCircuitBreakerFactory
    from purgatory.domain.model import OpenedState

    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=_HOUR)
    await factory.initialize()

    async def closed() -> object:
        # As its decorator does: look the breaker up on every call.
        async with await factory.get_breaker("bench-closed"):
            return await _noop()

    async def failing() -> object:
        async with await factory.get_breaker("bench-open"):
            return await _boom()

    await _trip(failing)

    async def rejected() -> object:
        try:
            async with await factory.get_breaker("bench-open"):
                return await _noop()
        except OpenedState:
            return None

    return Variant("purgatory", closed, rejected, "in-memory, get_breaker() per call")


async def _circuitbreaker() -> Variant:
    import circuitbreaker

    async def plain() -> int:
        return await _noop()

    state = {"fail": True}

    async def flaky() -> int:
        if state["fail"]:
            raise _Boom
        return await _noop()

    # Decorated by call rather than with @: the library is untyped.
    protected_closed: Step = circuitbreaker.circuit(
        failure_threshold=5, recovery_timeout=_HOUR, name="bench-closed"
    )(plain)
    protected_open: Step = circuitbreaker.circuit(
        failure_threshold=5, recovery_timeout=_HOUR, name="bench-open"
    )(flaky)

    await _trip(protected_open)
    state["fail"] = False

    async def closed() -> object:
        return await protected_closed()

    async def rejected() -> object:
        try:
            return await protected_open()
        except circuitbreaker.CircuitBreakerError:
            return None

    return Variant("circuitbreaker", closed, rejected, "@circuit decorator")


async def _contestants() -> tuple[list[Variant], list[str]]:
    variants = [
        _baseline(),
        await _ours(
            BreakerConfig(reset_timeout=_HOUR), "paytabs-guard", "default: 30 s call timeout"
        ),
        await _ours(
            BreakerConfig(reset_timeout=_HOUR, call_timeout=None),
            "paytabs-guard",
            "call_timeout=None, as the peers have none",
        ),
    ]
    skipped: list[str] = []
    peers: list[tuple[str, Callable[[], Awaitable[Variant]]]] = [
        ("pybreaker", _pybreaker),
        ("aiobreaker", _aiobreaker),
        ("purgatory", _purgatory),
        ("circuitbreaker", _circuitbreaker),
    ]
    for name, build in peers:
        try:
            variants.append(await build())
        except ImportError:
            skipped.append(name)
    return variants, skipped


# -- measurement ---------------------------------------------------------------------------------


async def _timed(step: Step, calls: int) -> float:
    """Nanoseconds per call of ``calls`` sequential awaits of ``step``, GC off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter_ns()
        for _ in range(calls):
            await step()
        return (time.perf_counter_ns() - started) / calls
    finally:
        if gc_was_enabled:
            gc.enable()


async def _memory(step: Step, rejects: int) -> tuple[int, int]:
    """Bytes still allocated after ``rejects`` rejections (and how many were run)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        done = 0
        chunk = 10_000
        while done < rejects:
            for _ in range(min(chunk, rejects - done)):
                await step()
            done += min(chunk, rejects - done)
            if tracemalloc.get_traced_memory()[0] - before > _MEMORY_CAP:
                break  # a leak: enough to show it, not enough to exhaust the machine
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, done
    finally:
        tracemalloc.stop()


async def run(*, rounds: int, calls: int, rejects: int) -> dict[str, Any]:
    """Measure every contestant; returns the JSON-ready results."""
    with warnings.catch_warnings():
        # Peers may warn about their own internals (deprecated datetime calls and the like).
        warnings.simplefilter("ignore")
        variants, skipped = await _contestants()
        results = [Result(v.name, v.note) for v in variants]
        for variant in variants:  # warm-up: caches, specialisation, lazily built state
            await _timed(variant.closed, max(calls // 10, 1))
            if variant.open is not None:
                await _timed(variant.open, max(calls // 10, 1))
        count = len(variants)
        for round_index in range(rounds):
            order = [(round_index + i) % count for i in range(count)]
            for index in order:
                results[index].closed.append(await _timed(variants[index].closed, calls))
            for index in order:
                step = variants[index].open
                if step is not None:
                    results[index].open.append(await _timed(step, calls))
        if rejects > 0:
            for variant, result in zip(variants, results, strict=True):
                if variant.open is not None and result is not results[0]:
                    result.memory_bytes, result.memory_rejects = await _memory(
                        variant.open, rejects
                    )
    base_closed = statistics.median(results[0].closed)
    base_open = statistics.median(results[0].open)
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rounds": rounds,
        "calls_per_round": calls,
        "rejects_for_memory": rejects,
        "skipped": skipped,
        "results": [r.summary(base_closed, base_open) for r in results],
    }


# -- report --------------------------------------------------------------------------------------


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference or reference <= 0:
        return "-"
    return f"{value / reference:.2f}x"


def _memory_cell(row: dict[str, Any]) -> str:
    size = row["memory_bytes"]
    if size is None:
        return "-"
    rejects = row["memory_rejects"]
    text = f"{size / 1024:,.1f} KiB after {rejects:,}"
    if rejects and size / rejects >= 1:
        text += f" ({size / rejects:,.0f} B each)"
    return text


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column headers and cells of the results table (shared by the rich and Markdown output)."""
    rows: list[dict[str, Any]] = report["results"]
    ours = rows[1]
    ours_closed = ours["closed"]["overhead_ns"]
    ours_open = ours["open"]["overhead_ns"] if ours["open"] else None
    headers = [
        "variant",
        "closed: median / min",
        "closed overhead",
        "vs ours",
        "reject: median / min",
        "reject overhead",
        "vs ours",
        "memory after rejects",
    ]
    cells: list[list[str]] = []
    for index, row in enumerate(rows):
        closed, opened = row["closed"], row["open"]
        if index == 0:
            cells.append(
                [
                    f"{row['name']} ({row['note']})",
                    f"{closed['median_ns']:,.0f} / {closed['min_ns']:,.0f}",
                    "-",
                    "-",
                    f"{opened['median_ns']:,.0f} / {opened['min_ns']:,.0f}",
                    "-",
                    "-",
                    "-",
                ]
            )
            continue
        cells.append(
            [
                f"{row['name']} ({row['note']})",
                f"{closed['median_ns']:,.0f} / {closed['min_ns']:,.0f}",
                f"{closed['overhead_ns']:,.0f}",
                _ratio(closed["overhead_ns"], ours_closed),
                f"{opened['median_ns']:,.0f} / {opened['min_ns']:,.0f}" if opened else "-",
                f"{opened['overhead_ns']:,.0f}" if opened else "-",
                _ratio(opened["overhead_ns"], ours_open) if opened else "-",
                _memory_cell(row),
            ]
        )
    return headers, cells


def _title(report: dict[str, Any]) -> str:
    return (
        f"Circuit breaker cost per call, ns (median of {report['rounds']} rounds x "
        f"{report['calls_per_round']:,} calls; overhead = median - baseline median; "
        "vs ours = overhead / paytabs-guard's)"
    )


def render(report: dict[str, Any]) -> None:
    """Print the results as a table (rich)."""
    from rich.console import Console
    from rich.table import Table

    headers, cells = table_rows(report)
    table = Table(title=_title(report))
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in cells:
        table.add_row(*row)
    console = Console(width=max(Console().width, 150))
    console.print(table)
    if report["skipped"]:
        console.print(f"skipped (not installed): {', '.join(report['skipped'])}")


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table, for ``docs/benchmarks.md``."""
    headers, cells = table_rows(report)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] + ["--:"] * (len(headers) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``paytabs-guard bench breaker [--quick] [--json PATH]``."""
    parser = argparse.ArgumentParser(
        prog="paytabs-guard bench breaker", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds x 5,000 calls, 100k rejects")
    parser.add_argument("--rounds", type=int, help="timed rounds per variant (default 9)")
    parser.add_argument("--calls", type=int, help="calls per timed loop (default 20,000)")
    parser.add_argument("--rejects", type=int, help="rejections for the memory run (default 1M)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 9)
    calls = args.calls if args.calls is not None else (5_000 if args.quick else 20_000)
    rejects = args.rejects if args.rejects is not None else (100_000 if args.quick else 1_000_000)
    if rounds < 1 or calls < 1 or rejects < 0:
        parser.error("--rounds and --calls must be >= 1, --rejects >= 0")
    report = asyncio.run(run(rounds=rounds, calls=calls, rejects=rejects))
    render(report)
    if args.markdown:
        print(markdown(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
