"""``paytabs-guard bench chaos``: every scenario under every configuration, then the report.

One simulator serves the whole run (reset before each scenario run); each (scenario,
configuration) gets a fresh service instance with a fresh database, so nothing one run left
behind (idempotency keys, payments, breaker state, retry budget) affects the next.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paytabs_guard.entrypoints.arguments import positive_float
from paytabs_guard.entrypoints.bench.load_support import postgres_database
from paytabs_guard.observability import configure_logging

from . import report
from .analysis import JsonObject, analyse
from .cores import LAYOUTS as CORE_LAYOUTS
from .cores import Cores, service_pinned, split_cores
from .driver import Budgets, arrivals
from .merchants import LAYOUTS as MERCHANT_LAYOUTS
from .merchants import merchants, merchants_process
from .oracle import down_spans
from .scenario_file import ScenarioFileError, load_scenario_file
from .scenarios import CONFIGURATIONS, PROFILES, Configuration, Profile, Scenario
from .service import API_KEY, Recorders, RunningService, running_service, stored_outcome
from .simulator import PROFILE_ID, SERVER_KEY, Simulator, event_loop_name, run_loop, start

DEFAULT_SEED: Final = 20250129
TIMELINE_POINTS: Final = 60
WIDE: Final = 170


class _LogCounter(logging.Handler):
    """Counts warnings and errors per logger and message, for the run's report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if len(message) > 120:
            message = message[:117] + "..."
        self.counts[f"{record.levelname} {record.name}: {message}"] += 1

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, Counter()
        return dict(counts.most_common(10))


class _LoggingState:
    """The logging configuration ``configure_logging`` changes, to put it back afterwards
    (the benchmark also runs inside other programs, such as the test suite)."""

    NAMES: Final = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")

    def __init__(self, saved: list[tuple[str, int, list[logging.Handler], bool]]) -> None:
        self._saved = saved

    @classmethod
    def save(cls) -> _LoggingState:
        loggers = [(name, logging.getLogger(name)) for name in cls.NAMES]
        return cls([(n, lg.level, list(lg.handlers), lg.propagate) for n, lg in loggers])

    def restore(self) -> None:
        for name, level, handlers, propagate in self._saved:
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate


def machine() -> JsonObject:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "event_loop": event_loop_name(),
    }


@contextlib.asynccontextmanager
async def _database(database_url: str | None, directory: Path, name: str) -> AsyncIterator[str]:
    """A fresh database for one run: a SQLite file, or a new PostgreSQL database (dropped)."""
    if database_url is None or database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{directory / f'{name}.db'}"
        return
    async with postgres_database(database_url) as url:
        yield url


def service_env(
    simulator: Simulator, database_url: str, profile: Profile, configuration: Configuration
) -> dict[str, str]:
    return {
        "PAYTABS_PROFILE_ID": str(PROFILE_ID),
        "PAYTABS_SERVER_KEY": SERVER_KEY,
        "PAYTABS_BASE_URL": simulator.base_url,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "warning",
        **profile.service_env(configuration),
    }


@dataclass(frozen=True, slots=True)
class Backends:
    """Where the service keeps its state: SQLite files by default, or PostgreSQL; scenario (e)
    needs PostgreSQL and Redis (two instances share them)."""

    database_url: str | None = None
    cluster_database_url: str | None = None
    redis_url: str | None = None

    def for_scenario(self, scenario: Scenario) -> str | None:
        if scenario.instances > 1:
            return self.cluster_database_url or self.database_url
        return self.database_url

    def cluster_ready(self) -> bool:
        url = self.cluster_database_url or self.database_url or ""
        return url.startswith("postgres") and bool(self.redis_url)


@contextlib.asynccontextmanager
async def _redis_prefix(redis_url: str | None, name: str) -> AsyncIterator[str | None]:
    """A fresh Redis key prefix for one run (breaker state must not leak between runs), whose
    keys are deleted afterwards."""
    if redis_url is None:
        yield None
        return
    prefix = f"chaos-{name}-{secrets.token_hex(4)}:"
    try:
        yield prefix
    finally:
        import redis.asyncio as aioredis  # only for the multi-instance scenario

        client = aioredis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


async def _calls_during_outages(
    simulator: Simulator, spans: Sequence[tuple[float, float]], t0: float, out: list[int]
) -> None:
    """Requests that reached the gateway during each outage (probes included), from the
    simulator's counters read when each outage begins and ends; appended to ``out``. When
    cancelled inside an outage, that outage counts up to the cancellation."""

    async def requests_now() -> int:
        counters = (await simulator.stats()).get("counters") or {}
        return sum(int(v) for k, v in counters.items() if str(k).startswith("requests "))

    async def at(moment: float) -> None:
        await asyncio.sleep(max(0.0, t0 + moment - time.monotonic()))

    for began, ended in spans:
        await at(began)
        before = await requests_now()
        try:
            await at(ended)
        finally:
            out.append(await requests_now() - before)


async def _drain(running: RunningService, recorders: Recorders, seconds: float) -> Any:
    """Wait until the relay has delivered every ``payment.completed`` (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while True:
        for container in running.containers:
            container.relay.notify()
        stored = await stored_outcome(running.container)
        delivered = stored.completed_ids <= set(recorders.completed_events)
        if (stored.undelivered == 0 and delivered) or time.monotonic() >= deadline:
            return stored
        await asyncio.sleep(0.2)


async def run_one(
    simulator: Simulator,
    profile: Profile,
    scenario: Scenario,
    configuration: Configuration,
    *,
    seed: int,
    backends: Backends,
    directory: Path,
    logs: _LogCounter,
    on_progress: Callable[[], None] | None,
    merchants_layout: str = "process",
    cores: Cores | None = None,
    merchants_child: asyncio.subprocess.Process | None = None,
) -> JsonObject:
    recorders = Recorders()
    name = f"{scenario.key}-{configuration.key}"
    schedule = arrivals(seed, scenario.arrival_rate(profile.rate), scenario.duration)
    budget = scenario.budget(profile.order_budget)
    started = time.monotonic()
    cpu_before = (time.process_time(), simulator.cpu_seconds())
    logs.take()
    shared = scenario.instances > 1
    async with (
        _database(backends.for_scenario(scenario), directory, name) as url,
        _redis_prefix(backends.redis_url if shared else None, name) as prefix,
    ):
        env = service_env(simulator, url, profile, configuration) | scenario.settings
        if shared:
            env |= {
                "REDIS_URL": str(backends.redis_url),
                "CIRCUIT_BREAKER_SHARED": "true",
                "EVENTS_REDIS_STREAM": f"{prefix}events",
            }
        async with running_service(
            env,
            breaker=configuration.breaker,
            recorders=recorders,
            instances=scenario.instances,
            redis_prefix=prefix,
        ) as svc:
            async with merchants(
                merchants_layout,
                service_urls=svc.urls,
                api_key=API_KEY,
                simulator=simulator,
                budgets=Budgets(budget, profile.completion_budget),
                on_progress=on_progress,
                prefer_wait=configuration.prefer_wait,
                cores=cores,
                child=merchants_child,
            ) as driver:
                recorders.on_payment_completed = driver.completed
                await simulator.reset(scenario.simulator_faults())
                t0 = time.monotonic()
                in_outages: list[int] = []
                counting = asyncio.create_task(
                    _calls_during_outages(
                        simulator, down_spans(scenario.outages, None), t0, in_outages
                    )
                )
                await driver.run(schedule, t0)
                run_end = time.monotonic() - t0
                merchants_cpu = driver.cpu_seconds
                counting.cancel()  # an outage that outlasts the orders is counted up to here
                with contextlib.suppress(asyncio.CancelledError):
                    await counting
            await simulator.clear_faults()
            stored = await _drain(svc, recorders, profile.drain_seconds)
            await svc.record_breaker_stats()
            transactions = await simulator.transactions()
            sim_stats = await simulator.stats()
    bucket = max(scenario.duration / TIMELINE_POINTS, 6.0 / profile.rate)
    result = analyse(
        orders=driver.orders,
        creates=driver.creates,
        changes=recorders.breaker_changes,
        completed_events=recorders.completed_events,
        stored=stored,
        transactions=transactions,
        sim_stats=sim_stats,
        windows=scenario.outages,
        t0=t0,
        run_end=run_end,
        duration=scenario.duration,
        bucket=bucket,
        budget=budget,
        need=scenario.slowest_create(),
        probes=recorders.probes,
        breaker_stats=recorders.breaker_stats,
        instances=scenario.instances,
        calls_in_outages=in_outages,
        served=recorders.served_creates,
    )
    sim_cpu = simulator.cpu_seconds()
    result["cpu_seconds"] = {
        "this_process": time.process_time() - cpu_before[0],
        "merchants_process": merchants_cpu,
        "simulator_process": None
        if sim_cpu is None or cpu_before[1] is None
        else sim_cpu - cpu_before[1],
    }
    result["run_seconds"] = run_end
    result["wall_seconds"] = time.monotonic() - started
    result["log"] = logs.take()
    return result


async def run_all(
    profile: Profile,
    configurations: Sequence[Configuration],
    *,
    seed: int,
    layout: str,
    backends: Backends,
    console: Console,
    quiet: bool,
    simulator_log: Path | None = None,
    merchants_layout: str = "process",
    cores: Cores | None = None,
) -> JsonObject:
    logs = _LogCounter()
    logging.getLogger().addHandler(logs)
    started = time.monotonic()
    scenarios_out: list[JsonObject] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    try:
        with (
            tempfile.TemporaryDirectory(prefix="chaos-") as temp,
            progress,
            service_pinned(cores),
        ):
            async with (
                start(layout, seed, profile.callback_retry_delays, log=simulator_log) as simulator,
                _merchants_child(merchants_layout, cores) as merchants_child,
            ):
                if cores is not None and simulator.pid is not None:
                    cores.pin_other(simulator.pid)
                for scenario in profile.scenarios:
                    runs: dict[str, JsonObject] = {}
                    for configuration in configurations:
                        total = len(
                            arrivals(seed, scenario.arrival_rate(profile.rate), scenario.duration)
                        )
                        task = progress.add_task(
                            f"{scenario.title[:28]:<28} {configuration.key:<8}", total=total
                        )

                        def advance(task_id: Any = task) -> None:
                            progress.advance(task_id)

                        runs[configuration.key] = await run_one(
                            simulator,
                            profile,
                            scenario,
                            configuration,
                            seed=seed,
                            backends=backends,
                            directory=Path(temp),
                            logs=logs,
                            on_progress=advance,
                            merchants_layout=merchants_layout,
                            cores=cores,
                            merchants_child=merchants_child,
                        )
                    scenarios_out.append(
                        {
                            "key": scenario.key,
                            "title": scenario.title,
                            "description": scenario.description,
                            "duration": scenario.duration,
                            "rate_per_second": scenario.arrival_rate(profile.rate),
                            "order_budget_seconds": scenario.budget(profile.order_budget),
                            "instances": scenario.instances,
                            "outages": [asdict(w) for w in scenario.outages],
                            "faults": scenario.simulator_faults(),
                            "runs": runs,
                        }
                    )
    finally:
        logging.getLogger().removeHandler(logs)
    document: JsonObject = {
        "benchmark": "paytabs-guard bench chaos",
        "profile": profile.name,
        "seed": seed,
        "simulator_layout": layout,
        "merchants_layout": merchants_layout,
        "cores": cores.describe() if cores is not None else "shared",
        "database": _database_kind(backends.database_url),
        "machine": machine(),
        "settings": {
            "rate_per_second": profile.rate,
            "order_budget_seconds": profile.order_budget,
            "completion_budget_seconds": profile.completion_budget,
            "callback_retry_delays": list(profile.callback_retry_delays),
            "service_env": {c.key: profile.service_env(c) for c in configurations},
        },
        "configurations": [asdict(c) for c in configurations],
        "scenarios": scenarios_out,
        "total_seconds": time.monotonic() - started,
    }
    document["targets"] = report.targets(document)
    return document


@contextlib.asynccontextmanager
async def _merchants_child(
    layout: str, cores: Cores | None
) -> AsyncIterator[asyncio.subprocess.Process | None]:
    """The one merchants' process every run uses, in the ``process`` layout."""
    if layout != "process":
        yield None
        return
    async with merchants_process(cores) as child:
        yield child


def _database_kind(database_url: str | None) -> str:
    return "postgresql" if database_url and database_url.startswith("postgres") else "sqlite"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paytabs-guard bench chaos",
        description="Drive the real service end to end against a failing PayTabs simulator, "
        "with and without retries and the circuit breaker, and report the numbers.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--short",
        action="store_true",
        help="CI size: scenarios a-d (e when named) with every configuration, under two "
        "minutes on 2 cores (--profile tiny: under a minute, what the test suite runs)",
    )
    size.add_argument("--profile", choices=sorted(PROFILES), help="full (default), short, tiny")
    parser.add_argument(
        "--scenarios",
        help="comma-separated subset of a,b,c,d,e (default all; e only with PostgreSQL and "
        "Redis) and 0 (no faults, a reference); with --scenario-file, default none of them",
    )
    parser.add_argument(
        "--scenario-file",
        action="append",
        default=[],
        metavar="FILE",
        help="also run the scenario described in this JSON file (repeatable); see "
        "docs/benchmarks.md for the format and docs/chaos-scenarios/ for examples",
    )
    parser.add_argument(
        "--configurations",
        default=",".join(c.key for c in CONFIGURATIONS),
        help=f"comma-separated subset of {','.join(c.key for c in CONFIGURATIONS)} (default all)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="arrivals and faults")
    parser.add_argument(
        "--simulator",
        choices=["process", "inprocess"],
        default="process",
        help="run the simulator as a child process (default) or in this event loop",
    )
    parser.add_argument(
        "--merchants",
        choices=list(MERCHANT_LAYOUTS),
        default="process",
        help="run the merchants (their HTTP clients) in a child process, as other machines "
        "would be (default), or in this event loop beside the service",
    )
    parser.add_argument(
        "--cores",
        choices=list(CORE_LAYOUTS),
        default="shared",
        help="shared (default): every process runs anywhere; split: the service's process on "
        "the first core alone, the merchants and the simulator on the others (measured worse "
        "on two cores: see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--database-url",
        help="postgresql+asyncpg://... to run on PostgreSQL (a fresh database per run); "
        "default: SQLite files in a temporary directory",
    )
    parser.add_argument(
        "--cluster-database-url",
        help="postgresql+asyncpg://... for scenario (e) only (default: --database-url)",
    )
    parser.add_argument(
        "--redis-url",
        help="redis://... for scenario (e): the instances share breaker state there",
    )
    parser.add_argument(
        "--rate", type=positive_float, help="orders per second (default: the profile's)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the full results as JSON")
    parser.add_argument("--svg", metavar="PATH", help="write the chart as SVG")
    parser.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    parser.add_argument(
        "--log",
        metavar="PATH",
        help="write the service's log (JSON lines) here, the simulator's stderr to PATH.simulator",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if an invariant broke (a duplicate charge, a lost event); timing targets "
        "are reported, never enforced",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = "short" if args.short else (args.profile or "full")
    backends = Backends(args.database_url, args.cluster_database_url, args.redis_url)
    try:
        profile = _chosen_profile(PROFILES[name], args, backends)
    except _Refused as refused:
        print(refused, file=sys.stderr)
        return 2
    if args.rate is not None:
        profile = Profile(**{**profile_fields(profile), "rate": float(args.rate)})
    chosen = [part.strip() for part in str(args.configurations).split(",") if part.strip()]
    by_key = {c.key: c for c in CONFIGURATIONS}
    if not chosen or any(key not in by_key for key in chosen):
        print(
            f"configurations must be a subset of {','.join(by_key)}",
            file=sys.stderr,
        )
        return 2
    configurations = [by_key[key] for key in chosen]

    console = Console(stderr=True)
    out = Console()
    if not out.is_terminal:
        out = Console(width=WIDE)
    log_path = Path(args.log) if args.log else Path(os.devnull)
    if args.log:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    log_stream = log_path.open("w", encoding="utf-8")
    saved = _LoggingState.save()
    configure_logging("warning", stream=log_stream)
    try:
        if not args.quiet:
            report.print_settings(out, profile, configurations, args.seed, args.simulator)
        document = run_loop(
            run_all(
                profile,
                configurations,
                seed=args.seed,
                layout=args.simulator,
                merchants_layout=args.merchants,
                cores=split_cores() if args.cores == "split" else None,
                backends=backends,
                console=console,
                quiet=args.quiet,
                simulator_log=log_path.with_name(log_path.name + ".simulator")
                if args.log
                else None,
            )
        )
    finally:
        saved.restore()
        log_stream.close()
    report.print_results(out, document)
    if args.json:
        report.write_json(Path(args.json), document)
    if args.svg:
        report.write_svg(Path(args.svg), document)
    if args.markdown:
        report.write_markdown(Path(args.markdown), document)
    broken = report.broken_invariants(document)
    for problem in broken:
        print(f"invariant broken: {problem}", file=sys.stderr)
    if args.check:
        for line in report.oracle_lines(document):
            print(line)
    return 1 if args.check and broken else 0


class _Refused(Exception):
    """A command line that names something that cannot run; the message says what."""


def _chosen_profile(profile: Profile, args: argparse.Namespace, backends: Backends) -> Profile:
    """The profile with the scenarios asked for: built-in ones by key, then scenario files."""
    files: list[Scenario] = []
    for path in args.scenario_file:
        try:
            files.append(load_scenario_file(Path(path)))
        except ScenarioFileError as error:
            raise _Refused(f"bad scenario file: {error}") from error
    explicit = args.scenarios is not None
    defaults = profile.default_scenarios or [s.key for s in profile.scenarios if s.key != "0"]
    default = "" if files else ",".join(defaults)
    wanted = {part.strip() for part in str(args.scenarios or default).split(",") if part.strip()}
    unknown = wanted - {s.key for s in profile.scenarios}
    if unknown or (not wanted and not files):
        raise _Refused(f"unknown scenarios: {', '.join(sorted(unknown)) or '(none given)'}")
    chosen = profile.select(wanted)
    cluster = [s for s in chosen.scenarios if s.instances > 1]
    if cluster and not backends.cluster_ready():
        if explicit:
            raise _Refused(
                "scenario e runs two instances: it needs --redis-url and a PostgreSQL "
                "--cluster-database-url (or --database-url)"
            )
        print(
            "skipping scenario (e): it needs --redis-url and a PostgreSQL database "
            "(--cluster-database-url or --database-url)",
            file=sys.stderr,
        )
        chosen = chosen.select(wanted - {s.key for s in cluster})
    keys = {s.key for s in chosen.scenarios}
    for scenario in files:
        if scenario.key in keys:
            raise _Refused(f"scenario key {scenario.key!r} is used twice")
        keys.add(scenario.key)
    return Profile(**{**profile_fields(chosen), "scenarios": chosen.scenarios + tuple(files)})


def profile_fields(profile: Profile) -> dict[str, Any]:
    return {name: getattr(profile, name) for name in Profile.__dataclass_fields__}
