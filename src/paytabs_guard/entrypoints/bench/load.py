"""``paytabs-guard bench load``: sustained throughput, latency and memory of the real service.

For each database (SQLite, PostgreSQL) and worker count (1, 2) the benchmark starts, as
subprocesses, a bare FastAPI endpoint (the ceiling) and then the service with N workers, both
through ``load_server`` (uvicorn with the settings of ``paytabs-guard serve``; ``--server serve``
runs ``serve`` itself), with the PayTabs simulator in a process of its own, and drives them from
this process (the load generator, ``load_client``):

* **bare**: ``POST /bare``, a pydantic-validated JSON body in, a small JSON object out; first
  one request after another (the HTTP hop alone), then the closed loop;
* **create**: ``POST /payments/v2/create`` (a new Idempotency-Key each time) against the
  simulator;
* **callback**: ``POST /payments/v2/webhook`` with a correctly signed PayTabs callback for each
  payment created before (each one new: verified, deduplicated, applied, persisted);
* **added latency**: sequential creates through the service, alternating with the PayTabs
  client's ``create_payment_page`` straight to the same simulator; the difference of the p50s,
  and the CPU the server and PostgreSQL spent per sequential create (a floor under it);
* **the floor** (PostgreSQL, 1 worker): what no create or callback can do without, in CPU and,
  for the added latency, in wall-clock time (``load_floor``).

Then one memory run in the production shape (PostgreSQL with Redis, the most workers asked
for) under a steady create-then-callback load, sampling the workers' RSS; the least-squares
slope after a warm-up says whether memory grows.

Every process shares the machine's cores: servers, simulator, PostgreSQL, Redis and the
generator. Nothing is pinned; the CPU each group used in each phase is read from ``/proc`` and
reported in cores, so the split is measured rather than assumed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from paytabs_guard.adapters.paytabs.transformers import HostedPageRequest
from paytabs_guard.bootstrap import build_paytabs_client
from paytabs_guard.domain import Money
from paytabs_guard.entrypoints.arguments import (
    int_in,
    int_list,
    non_negative_float,
    positive_float,
    subset_of,
)
from paytabs_guard.settings import Settings, load_settings
from paytabs_simulator.config import DEFAULT_SERVER_KEY
from paytabs_simulator.signing import sign_body

from .load_client import Connection, LoadResult, build_request, percentile, run_closed_loop
from .load_counted import COUNTED_SERVICE_APP, COUNTS_ENV, FLUSH_SECONDS, read_counts
from .load_floor import floor, measure_pieces
from .load_procs import Server, machine_cpu, postgres_backends_cpu, rss_bytes, start_server
from .load_report import markdown, memory_report, targets
from .load_server import BARE_APP
from .load_support import (
    database_name,
    free_port,
    machine,
    postgres_database,
    postgres_reachable,
    redis_reachable,
    remove_redis_keys,
)

PROFILE_ID: Final = 987654
API_KEY: Final = "bench-load-api-key-0123456789"
CREATE_BODY: Final = json.dumps(
    {"amount": "100.00", "currency": "SAR", "description": "Load test order"},
    separators=(",", ":"),
).encode()
REDIS_PREFIX: Final = "paytabs-guard:"  # what `serve` uses
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/15"
RUNNER: Final = ("-m", "paytabs_guard.entrypoints.bench.load_server")

Phase = dict[str, object]


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how hard each phase runs, and against what."""

    quick: bool
    databases: tuple[str, ...]
    workers: tuple[int, ...]
    concurrency: int
    warmup: float
    duration: float
    latency_samples: int
    memory_seconds: float
    memory_interval: float
    memory_concurrency: int
    postgres_url: str
    redis_url: str | None
    log_level: str
    server: str
    malloc_arena_max: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = bool(args.quick)
        memory = 0.0 if args.no_memory else (args.memory_seconds or (6.0 if quick else 300.0))
        return cls(
            quick=quick,
            databases=args.databases,
            workers=args.workers,
            concurrency=args.concurrency,
            warmup=args.warmup if args.warmup is not None else (0.5 if quick else 5.0),
            duration=args.duration if args.duration is not None else (2.0 if quick else 20.0),
            latency_samples=args.latency_samples or (30 if quick else 400),
            memory_seconds=memory,
            memory_interval=1.0 if quick else 5.0,
            memory_concurrency=args.memory_concurrency,
            postgres_url=args.postgres_url,
            redis_url=None if args.no_redis else args.redis_url,
            log_level=args.log_level,
            server=args.server,
            malloc_arena_max=args.malloc_arena_max,
        )


# ---- what the load generator sends --------------------------------------------------------------


def create_request(port: int, key: str) -> bytes:
    headers = [
        ("Authorization", f"Bearer {API_KEY}"),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", key),
    ]
    return build_request("POST", "127.0.0.1", port, "/payments/v2/create", CREATE_BODY, headers)


def create_requests(port: int) -> Iterator[tuple[bytes, object]]:
    """Endless creates, each with an Idempotency-Key of its own."""
    prefix = secrets.token_hex(4)
    for n in itertools.count():
        yield create_request(port, f"load-{prefix}-{n}"), None


def bare_requests(port: int) -> Iterator[tuple[bytes, object]]:
    request = build_request(
        "POST", "127.0.0.1", port, "/bare", CREATE_BODY, [("Content-Type", "application/json")]
    )
    while True:
        yield request, None


def callback_body(payment: Mapping[str, Any]) -> bytes:
    """PayTabs' callback for the paid hosted page of ``payment``, compact JSON as PayTabs sends."""
    body = {
        "tran_ref": payment["tran_ref"],
        "merchant_id": 123456,
        "profile_id": PROFILE_ID,
        "cart_id": payment["cart_id"],
        "cart_description": payment["description"],
        "cart_currency": payment["currency"],
        "cart_amount": payment["amount"],
        "tran_currency": payment["currency"],
        "tran_total": payment["amount"],
        "tran_type": "Sale",
        "tran_class": "ECom",
        "payment_result": {
            "response_status": "A",
            "response_code": "G12345",
            "response_message": "Authorised",
            "acquirer_ref": "TRAN0001.6799A1B2.00000001",
            "cvv_result": " ",
            "avs_result": " ",
            "transaction_time": "2025-01-29T10:00:00Z",
        },
        "payment_info": {
            "payment_method": "Visa",
            "card_type": "Credit",
            "card_scheme": "Visa",
            "payment_description": "4111 11## #### 1111",
            "expiryMonth": 12,
            "expiryYear": 2030,
        },
        "ipn_trace": f"IPNS0001.{secrets.token_hex(4).upper()}.00000001",
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def callback_request(port: int, payment: Mapping[str, Any]) -> bytes:
    """The callback signed as PayTabs signs it: HMAC-SHA256 of the raw body, server key."""
    raw = callback_body(payment)
    headers = [
        ("Content-Type", "application/json"),
        ("Signature", sign_body(raw, DEFAULT_SERVER_KEY)),
        ("User-Agent", "Go-http-client/1.1"),
    ]
    return build_request("POST", "127.0.0.1", port, "/payments/v2/webhook", raw, headers)


def callback_outcome(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return "unreadable"
    if isinstance(document, dict):
        return str(document.get("outcome") or document.get("reason") or "problem")
    return "unreadable"


# ---- CPU accounting -----------------------------------------------------------------------------


#: Reads the CPU seconds of each process of a group, by pid.
CpuReader = Callable[[], Mapping[int, float]]


@dataclass
class CpuMeter:
    """CPU used by each process group over a phase, in cores (CPU seconds per wall second).
    ``other`` is the rest of the machine: Redis, other PostgreSQL sessions, anything else.

    Counted per process: one that started during the phase counts whole, one that ended during
    it is lost (its last reading is gone with it), so a group is never negative."""

    groups: Mapping[str, CpuReader]
    _start: dict[str, Mapping[int, float]] = field(default_factory=dict)
    _generator: float = 0.0
    _wall: float = 0.0
    _machine: float = 0.0

    def start(self) -> None:
        self._start = {name: read() for name, read in self.groups.items()}
        self._generator = time.process_time()
        self._machine = machine_cpu()[0]
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        used = {}
        for name, read in self.groups.items():
            before = self._start[name]
            used[name] = sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in read().items())
        used["generator"] = time.process_time() - self._generator
        busy = machine_cpu()[0] - self._machine
        used["other"] = max(0.0, busy - sum(used.values()))
        return {name: round(seconds / wall, 2) for name, seconds in used.items()}


# ---- one configuration --------------------------------------------------------------------------


@dataclass
class ConfigResult:
    database: str
    workers: int
    redis: bool
    phases: dict[str, Phase] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    per_operation: dict[str, dict[str, float | None]] = field(default_factory=dict)
    floor: dict[str, float] = field(default_factory=dict)
    """The pieces no create or callback can do without, and their sums (``load_floor``)."""

    def throughput(self, phase: str) -> float:
        value = self.phases.get(phase, {}).get("throughput_rps", 0.0)
        return float(value) if isinstance(value, int | float) else 0.0

    def ratio(self, phase: str) -> float:
        bare = self.throughput("bare")
        return self.throughput(phase) / bare if bare else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "database": self.database,
            "workers": self.workers,
            "redis": self.redis,
            "phases": self.phases,
            "ratios": {p: round(self.ratio(p), 3) for p in ("create", "callback")},
            "cpu_cores": self.cpu,
            "per_operation": self.per_operation,
            "added_latency": self.latency,
            "floor": self.floor,
        }


def service_env(
    sim_url: str, database_url: str, redis_url: str | None, port: int, log_level: str
) -> dict[str, str]:
    return {
        "PAYTABS_PROFILE_ID": str(PROFILE_ID),
        "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
        "PAYTABS_WEBHOOK_SECRET": "",
        "PAYTABS_BASE_URL": sim_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url or "",
        "API_KEYS": API_KEY,
        "ADMIN_API_KEYS": "",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": log_level,
    }


@contextlib.asynccontextmanager
async def database_for(kind: str, plan: Plan, workdir: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        # A new file in the run's temporary directory, which goes at the end of the run.
        yield f"sqlite+aiosqlite:///{workdir / f'bench-{secrets.token_hex(4)}.db'}"
    else:
        async with postgres_database(plan.postgres_url) as url:
            yield url


@dataclass
class Stack:
    """The simulator and the datastores that every configuration shares."""

    plan: Plan
    workdir: Path
    simulator: Server
    postgres_problem: str | None
    redis_problem: str | None
    postgres_database: str | None = None
    """The throw-away database of the running service, whose backends' CPU is metered."""
    database_url: str | None = None
    """The running service's database URL."""
    counts: Path | None = None
    """Where the running service's workers write their statement counts (``load_counted``)."""

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator.port}"

    @property
    def redis_url(self) -> str | None:
        return self.plan.redis_url if self.redis_problem is None else None

    def server_env(self) -> dict[str, str]:
        """What the server processes get besides their settings (glibc's arena cap)."""
        arenas = self.plan.malloc_arena_max
        return {"MALLOC_ARENA_MAX": str(arenas)} if arenas > 0 else {}

    def paytabs_settings(self) -> Settings:
        """Settings that point the service's own PayTabs client at the stack's simulator."""
        return load_settings(
            {
                "PAYTABS_PROFILE_ID": str(PROFILE_ID),
                "PAYTABS_SERVER_KEY": DEFAULT_SERVER_KEY,
                "PAYTABS_BASE_URL": self.sim_url,
            }
        )

    def cpu_groups(self, server: Server) -> dict[str, CpuReader]:
        name = self.postgres_database

        def postgres() -> Mapping[int, float]:
            return postgres_backends_cpu(name) if name else {}

        return {
            "server": server.cpu_seconds,
            "simulator": self.simulator.cpu_seconds,
            "postgres": postgres,
        }

    async def reset_simulator(self) -> None:
        async with httpx.AsyncClient(base_url=self.sim_url, timeout=30) as client:
            (await client.post("/_sim/reset")).raise_for_status()

    @contextlib.asynccontextmanager
    async def service(self, database: str, workers: int) -> AsyncIterator[Server]:
        """``paytabs-guard serve --workers N`` on a fresh database, ready to take load."""
        redis_url = self.redis_url if database == "postgres" else None
        async with database_for(database, self.plan, self.workdir) as url:
            self.postgres_database = database_name(url) if database == "postgres" else None
            self.database_url = url
            port = free_port()
            env = service_env(self.sim_url, url, redis_url, port, self.plan.log_level)
            env |= self.server_env()
            if self.plan.server == "serve":
                argv = ["-m", "paytabs_guard.entrypoints.cli", "serve", "--port", str(port)]
                self.counts = None  # serve itself counts nothing
            else:
                argv = [*RUNNER, "--app", COUNTED_SERVICE_APP, "--port", str(port)]
                self.counts = self.workdir / f"counts-{database}-{workers}-{port}"
                self.counts.mkdir()
                env[COUNTS_ENV] = str(self.counts)
            try:
                name = f"service-{database}-{workers}"
                async with self._running(name, argv, port, env, workers) as server:
                    yield server
            finally:
                self.counts = None
                self.database_url = None
                if redis_url is not None:
                    await remove_redis_keys(redis_url, REDIS_PREFIX)

    @contextlib.asynccontextmanager
    async def bare(self, workers: int) -> AsyncIterator[Server]:
        port = free_port()
        argv = [*RUNNER, "--app", BARE_APP, "--port", str(port)]
        env = self.server_env()
        async with self._running(f"bare-{workers}", argv, port, env, workers) as server:
            yield server

    @contextlib.asynccontextmanager
    async def _running(
        self, name: str, argv: list[str], port: int, env: dict[str, str], workers: int
    ) -> AsyncIterator[Server]:
        """``argv`` with ``workers`` worker processes in the stack's folder, ready once every
        worker is up and /readyz answers; stopped on the way out."""
        server = await start_server(
            name,
            [*argv, "--workers", str(workers)],
            port=port,
            env=env,
            cwd=self.workdir,
            ready_path="/readyz",
            expect_workers=workers,
        )
        try:
            yield server
        finally:
            server.stop()


async def closed_loop(
    stack: Stack,
    server: Server,
    name: str,
    requests: Iterator[tuple[bytes, object]],
    *,
    keep: Callable[[object, int, bytes], None] | None = None,
    keep_warmup: Callable[[object, int, bytes], None] | None = None,
) -> tuple[LoadResult, dict[str, float], dict[str, float | None]]:
    """The phase's load, the cores each group used, and the cost per answered request (warm-up
    included, like the CPU): server CPU ms, and statements and round trips where counted."""
    plan = stack.plan
    answered = [0]

    def counting(inner: Callable[[object, int, bytes], None] | None) -> Any:
        def on_answer(tag: object, status: int, body: bytes) -> None:
            answered[0] += 1
            if inner is not None:
                inner(tag, status, body)

        return on_answer

    counts = stack.counts
    before = read_counts(counts) if counts is not None else None
    meter = CpuMeter(stack.cpu_groups(server))
    meter.start()
    started = time.perf_counter()
    result = await run_closed_loop(
        name,
        "127.0.0.1",
        server.port,
        requests,
        concurrency=plan.concurrency,
        duration=plan.duration,
        warmup=plan.warmup,
        on_answer=counting(keep),
        on_warmup_answer=counting(keep_warmup),
    )
    wall = time.perf_counter() - started
    cores = meter.stop()
    return result, cores, await per_operation(cores, wall, answered[0], counts, before)


async def per_operation(
    cores: Mapping[str, float],
    wall: float,
    answered: int,
    counts: Path | None,
    before: tuple[int, int] | None,
) -> dict[str, float | None]:
    """Server CPU milliseconds, statements and round trips per answered request."""
    costs: dict[str, float | None] = {
        "cpu_ms": round(1000 * cores.get("server", 0.0) * wall / answered, 3) if answered else None,
        "statements": None,
        "round_trips": None,
    }
    if counts is not None and before is not None and answered:
        await asyncio.sleep(2.5 * FLUSH_SECONDS)  # the workers' last totals reach their files
        statements, round_trips = read_counts(counts)
        costs["statements"] = round((statements - before[0]) / answered, 2)
        costs["round_trips"] = round((round_trips - before[1]) / answered, 2)
    return costs


async def sequential_p50_ms(server: Server, samples: int) -> float:
    """p50 of requests to the bare endpoint one after another on one keep-alive connection,
    after a warm-up: the HTTP hop a create through the service takes and a direct call not."""
    payload = next(bare_requests(server.port))[0]
    connection = Connection("127.0.0.1", server.port)
    times: list[float] = []
    warm = max(5, samples // 10)
    try:
        for n in range(warm + samples):
            started = time.perf_counter()
            status, _ = await connection.request(payload)
            if status >= 300:
                raise RuntimeError(f"the bare endpoint answered {status}")
            if n >= warm:
                times.append(1000 * (time.perf_counter() - started))
    finally:
        await connection.aclose()
    times.sort()
    return percentile(times, 0.5)


async def added_latency(stack: Stack, server: Server, created: list[bytes]) -> dict[str, float]:
    """p50/p99 of creates through the service and of the PayTabs client straight to the same
    simulator, taking turns on one keep-alive connection each, after a warm-up."""
    samples = stack.plan.latency_samples
    warm = max(5, samples // 10)
    client = build_paytabs_client(stack.paytabs_settings())
    service_base = f"http://127.0.0.1:{server.port}"
    connection = Connection("127.0.0.1", server.port)
    prefix = secrets.token_hex(4)
    via_service: list[float] = []
    direct: list[float] = []
    failures = 0
    clock = time.perf_counter
    # What the service's side of a sequential create costs in CPU, the server's and the
    # database's: neither overlaps the other or the simulator's, so their sum is a floor under
    # the service's latency, and under the latency it adds, less the client's own share.
    meter = CpuMeter(stack.cpu_groups(server))
    metered_from = 0.0
    # Statements and round trips per create, its relay run included: counted from totals the
    # workers have flushed once the warm-up's last relay run is over.
    counts = stack.counts
    before: tuple[int, int] | None = None
    try:
        for n in range(warm + samples):
            if n == warm:
                if counts is not None:
                    await asyncio.sleep(2.5 * FLUSH_SECONDS)
                    before = read_counts(counts)
                meter.start()
                metered_from = clock()
            payload = create_request(server.port, f"latency-{prefix}-{n}")
            started = clock()
            status, body = await connection.request(payload)
            service_ms = (clock() - started) * 1000
            if status == 201:
                created.append(body)
            else:
                failures += 1
            page = HostedPageRequest(
                cart_id=f"direct-{prefix}-{n}",
                amount=Money.of("100.00", "SAR"),
                description="Load test order",
                callback_url=f"{service_base}/payments/v2/webhook",
                return_url=f"{service_base}/payments/v2/return",
                paypage_ttl_minutes=20,
            )
            started = clock()
            await client.create_payment_page(page)
            direct_ms = (clock() - started) * 1000
            if n >= warm:
                via_service.append(service_ms)
                direct.append(direct_ms)
        metered = clock() - metered_from
        cores = meter.stop()
        sent: dict[str, float] = {}
        if counts is not None and before is not None:
            await asyncio.sleep(2.5 * FLUSH_SECONDS)  # the last create's relay run included
            statements, round_trips = read_counts(counts)
            sent["statements"] = round((statements - before[0]) / samples, 2)
            sent["round_trips"] = round((round_trips - before[1]) / samples, 2)
    finally:
        await connection.aclose()
        await client.aclose()
    via_service.sort()
    direct.sort()
    service_p50 = percentile(via_service, 0.5)
    direct_p50 = percentile(direct, 0.5)
    return {
        "samples": samples,
        "service_p50_ms": round(service_p50, 3),
        "service_p99_ms": round(percentile(via_service, 0.99), 3),
        "direct_p50_ms": round(direct_p50, 3),
        "direct_p99_ms": round(percentile(direct, 0.99), 3),
        "added_p50_ms": round(service_p50 - direct_p50, 3),
        "server_cpu_ms": round(1000 * cores.get("server", 0.0) * metered / samples, 3),
        "postgres_cpu_ms": round(1000 * cores.get("postgres", 0.0) * metered / samples, 3),
        "service_failures": failures,
    } | sent


async def run_config(stack: Stack, database: str, workers: int) -> ConfigResult:
    redis_on = database == "postgres" and stack.redis_url is not None
    result = ConfigResult(database, workers, redis_on)
    progress(f"{database}, {workers} worker(s): bare endpoint")
    async with stack.bare(workers) as bare:
        sequential = await sequential_p50_ms(bare, stack.plan.latency_samples)
        load, cpu, costs = await closed_loop(stack, bare, "bare", bare_requests(bare.port))
        costs["sequential_p50_ms"] = round(sequential, 3)
    result.phases["bare"] = load.summary()
    result.cpu["bare"] = cpu
    result.per_operation["bare"] = costs

    await stack.reset_simulator()
    async with stack.service(database, workers) as service:
        created: list[bytes] = []

        def keep(_tag: object, status: int, body: bytes) -> None:
            if status == 201:
                created.append(body)

        progress(f"{database}, {workers} worker(s): added latency (sequential)")
        result.latency = await added_latency(stack, service, created)
        progress(f"{database}, {workers} worker(s): create")
        load, cpu, costs = await closed_loop(
            stack, service, "create", create_requests(service.port), keep=keep, keep_warmup=keep
        )
        result.phases["create"] = load.summary()
        result.cpu["create"] = cpu
        result.per_operation["create"] = costs

        progress(f"{database}, {workers} worker(s): callback ({len(created)} payments)")
        payments = [json.loads(body) for body in created]
        callbacks = iter([(callback_request(service.port, p), None) for p in payments])
        outcomes: Counter[str] = Counter()

        def tally(_tag: object, status: int, body: bytes) -> None:
            outcomes[callback_outcome(body) if status in (200, 503) else str(status)] += 1

        load, cpu, costs = await closed_loop(stack, service, "callback", callbacks, keep=tally)
        result.phases["callback"] = load.summary() | {"outcomes": dict(outcomes)}
        result.cpu["callback"] = cpu
        result.per_operation["callback"] = costs

        bare_ms = result.per_operation["bare"].get("cpu_ms")
        if database == "postgres" and workers == 1 and stack.database_url is not None:
            progress(f"{database}, {workers} worker(s): the floor, piece by piece")
            samples = max(100, stack.plan.latency_samples)
            pieces = await measure_pieces(
                stack.database_url, stack.paytabs_settings(), samples=samples
            )
            result.floor = pieces
            if isinstance(bare_ms, int | float) and bare_ms > 0:
                result.floor |= floor(float(bare_ms), pieces, sequential)
    return result


# ---- memory over a long run ---------------------------------------------------------------------


async def memory_run(stack: Stack) -> dict[str, object]:
    plan = stack.plan
    database = "postgres" if stack.postgres_problem is None else "sqlite"
    workers = max(plan.workers)
    await stack.reset_simulator()
    progress(f"memory: {database}, {workers} worker(s), {plan.memory_seconds:g} s")
    async with stack.service(database, workers) as service:
        pids = service.workers()
        samples: list[tuple[float, dict[int, int]]] = []
        counts: Counter[str] = Counter()
        started = time.perf_counter()
        stop_at = started + plan.memory_seconds
        done = asyncio.Event()

        async def sample() -> None:
            while True:
                samples.append((time.perf_counter() - started, {p: rss_bytes(p) for p in pids}))
                if done.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), plan.memory_interval)

        async def customer(n: int) -> None:
            connection = Connection("127.0.0.1", service.port)
            try:
                for i in itertools.count():
                    if time.perf_counter() >= stop_at:
                        return
                    key = f"memory-{n}-{i}-{secrets.token_hex(3)}"
                    status, body = await connection.request(create_request(service.port, key))
                    counts[f"create {status}"] += 1
                    if status != 201:
                        continue
                    payment = json.loads(body)
                    status, body = await connection.request(callback_request(service.port, payment))
                    counts[f"callback {status}"] += 1
            finally:
                await connection.aclose()

        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(*(customer(n) for n in range(plan.memory_concurrency)))
        finally:
            done.set()
            await sampler
        elapsed = time.perf_counter() - started
    return memory_report(database, workers, pids, samples, counts, elapsed, plan.memory_interval)


# ---- the whole run ------------------------------------------------------------------------------


_started: dict[str, float] = {}


def progress(message: str) -> None:
    elapsed = time.monotonic() - _started.setdefault("run", time.monotonic())
    print(f"[bench load {elapsed:5.1f} s] {message}", file=sys.stderr, flush=True)


async def run(plan: Plan, command: str) -> dict[str, object]:
    _started["run"] = time.monotonic()
    report: dict[str, object] = {
        "benchmark": "load",
        "mode": "quick" if plan.quick else "full",
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": {
            "concurrency": plan.concurrency,
            "warmup_seconds": plan.warmup,
            "phase_seconds": plan.duration,
            "latency_samples": plan.latency_samples,
            "memory_seconds": plan.memory_seconds,
            "memory_concurrency": plan.memory_concurrency,
            "log_level": plan.log_level,
            "server": plan.server,
            "malloc_arena_max": plan.malloc_arena_max,
        },
    }
    postgres_problem = (
        await postgres_reachable(plan.postgres_url) if "postgres" in plan.databases else "not asked"
    )
    redis_problem = await redis_reachable(plan.redis_url) if plan.redis_url else "off"
    skipped: list[str] = []
    if "postgres" in plan.databases and postgres_problem is not None:
        skipped.append(f"postgres: {postgres_problem}")
    if plan.redis_url and redis_problem is not None:
        skipped.append(f"redis: {redis_problem}")
    report["skipped"] = skipped
    with tempfile.TemporaryDirectory(prefix="ptg-bench-load-") as tmp:
        workdir = Path(tmp)
        sim_port = free_port()
        simulator = await start_server(
            "simulator",
            ["-m", "paytabs_guard.entrypoints.bench.load_simulator", "--port", str(sim_port)],
            port=sim_port,
            env={},
            cwd=workdir,
            ready_path="/_sim/health",
        )
        stack = Stack(plan, workdir, simulator, postgres_problem, redis_problem)
        try:
            configs = []
            for database in plan.databases:
                if database == "postgres" and postgres_problem is not None:
                    continue
                for workers in plan.workers:
                    configs.append(await run_config(stack, database, workers))
            report["configs"] = [c.as_dict() for c in configs]
            if plan.memory_seconds > 0:
                report["memory"] = await memory_run(stack)
        finally:
            simulator.stop()
    report["targets"] = targets(report)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paytabs-guard bench load",
        description="Throughput, latency and memory of the service under load (real processes).",
    )
    parser.add_argument("--quick", action="store_true", help="short phases (under a minute)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the full report as JSON to PATH (no PATH: print it instead of the tables)",
    )
    parser.add_argument(
        "--databases",
        type=subset_of(("sqlite", "postgres"), name="databases"),
        default="sqlite,postgres",
        help="sqlite,postgres",
    )
    parser.add_argument(
        "--workers",
        type=int_list(1, 64, name="worker count"),
        default="1,2",
        help="worker counts, e.g. 1,2 (1-64 each)",
    )
    parser.add_argument(
        "--concurrency", type=int_in(1), default=16, help="connections (default 16)"
    )
    parser.add_argument(
        "--warmup", type=non_negative_float, help="seconds before measuring (5; quick 0.5)"
    )
    parser.add_argument("--duration", type=positive_float, help="seconds per phase (20; quick 2)")
    parser.add_argument(
        "--latency-samples", type=int_in(1), help="sequential creates (400; quick 30)"
    )
    parser.add_argument("--memory-seconds", type=positive_float, help="memory run (300; quick 6)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory run")
    parser.add_argument("--memory-concurrency", type=int_in(1), default=8, help="customers (8)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES_URL),
        help="a server where a throw-away database can be created (TEST_DATABASE_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"Redis for the PostgreSQL runs; its {REDIS_PREFIX}* keys are deleted after",
    )
    parser.add_argument("--no-redis", action="store_true", help="PostgreSQL runs without Redis")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--malloc-arena-max",
        type=int_in(0),
        default=0,
        help="MALLOC_ARENA_MAX for the servers (default 0: unset, glibc's 8 per core)",
    )
    parser.add_argument(
        "--server",
        default="uvicorn",
        choices=["uvicorn", "serve"],
        help="how the service runs: uvicorn with the service's app factory and serve's settings "
        "(default; the same runner as the bare endpoint), or `paytabs-guard serve` itself",
    )
    return parser


def _interrupted(_signum: int, _frame: object) -> None:
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the servers started in their own
    # sessions are stopped on the way out instead of outliving the benchmark.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    args = build_parser().parse_args(argv)
    plan = Plan.from_args(args)
    shown = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["paytabs-guard", "bench", "load", *shown])
    try:
        report = asyncio.run(run(plan, command))
    except KeyboardInterrupt:
        progress("interrupted; the servers it started are stopped")
        return 130
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(markdown(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
