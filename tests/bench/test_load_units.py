"""The pieces of ``bench load`` that can be checked without running it: the load generator
against a small server, the requests it builds, and the arithmetic of its report. (The benchmark
itself is a command that prints numbers; nothing here asserts a timing.)"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from paytabs_guard.adapters.paytabs.signature import verify_callback
from paytabs_guard.entrypoints.bench import load, load_floor, load_report, load_support
from paytabs_guard.entrypoints.bench.load_client import (
    Connection,
    build_request,
    percentile,
    run_closed_loop,
)
from paytabs_guard.entrypoints.loopback import serve_app
from paytabs_simulator.config import DEFAULT_SERVER_KEY as SERVER_KEY

pytestmark = pytest.mark.anyio


async def echo(request: Request) -> Response:
    body = await request.body()
    if request.url.path == "/teapot":
        return PlainTextResponse("no", status_code=418)
    return JSONResponse({"length": len(body)}, status_code=201)


async def chunked(_request: Request) -> Response:
    async def parts() -> Iterator[bytes]:  # type: ignore[misc]  # an async generator
        for part in (b"ab", b"cd", b"ef"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/teapot", echo, methods=["POST"]),
        Route("/chunked", chunked),
    ]
)


async def test_the_closed_loop_counts_every_answer_after_the_warmup_once() -> None:
    async with serve_app(APP) as url:
        port = int(url.rsplit(":", 1)[1])
        requests = iter(
            [(build_request("POST", "127.0.0.1", port, "/echo", b"x" * n), n) for n in range(60)]
            + [(build_request("POST", "127.0.0.1", port, "/teapot", b"x"), "tea")] * 5
        )
        seen: list[object] = []
        bodies: list[bytes] = []

        def keep(tag: object, status: int, body: bytes) -> None:
            seen.append(tag)
            bodies.append(body)

        result = await run_closed_loop(
            "echo", "127.0.0.1", port, requests, concurrency=4, duration=30, on_answer=keep
        )
    assert result.requests == 65  # the source ran out long before the duration
    assert result.statuses == {201: 60, 418: 5}
    assert result.unexpected(201) == 5
    assert sorted(n for n in seen if isinstance(n, int)) == list(range(60))
    assert {json.loads(b)["length"] for b in bodies if b.startswith(b"{")} == set(range(60))
    assert len(result.latencies_ms) == 65
    assert result.throughput > 0
    assert set(result.summary()) >= {"throughput_rps", "p50_ms", "p99_ms", "statuses"}


async def test_a_connection_reads_chunked_answers() -> None:
    async with serve_app(APP) as url:
        connection = Connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        try:
            for _ in range(2):  # the connection stays usable after a chunked answer
                status, body = await connection.request(
                    build_request("GET", "127.0.0.1", 0, "/chunked")
                )
                assert (status, body) == (200, b"abcdef")
        finally:
            await connection.aclose()


def test_callbacks_are_signed_as_paytabs_signs_them() -> None:
    payment = {
        "tran_ref": "TST2502900000001",
        "cart_id": "cart-1",
        "description": "Load test order",
        "currency": "SAR",
        "amount": "100.00",
    }
    request = load.callback_request(8000, payment)
    head, _, body = request.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert int(headers["Content-Length"]) == len(body)
    verify_callback(body, headers["Signature"], [SecretStr(SERVER_KEY)])
    document = json.loads(body)
    assert document["payment_result"]["response_status"] == "A"
    assert (document["cart_id"], document["tran_total"]) == ("cart-1", "100.00")


def test_every_create_carries_its_own_idempotency_key() -> None:
    keys = [
        next(line for line in request.split(b"\r\n") if line.startswith(b"Idempotency-Key"))
        for request, _ in itertools.islice(load.create_requests(8000), 50)
    ]
    assert len(set(keys)) == 50


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([], 0.5) == 0


def test_a_steady_memory_series_is_flat_and_a_growing_one_is_not() -> None:
    plan = load.Plan.from_args(load.build_parser().parse_args(["--quick"]))
    seconds = [float(t) for t in range(0, 300, 5)]
    steady = [
        (t, {1: 100 * load_report.MIB, 2: int((120 + (t % 10) / 10) * load_report.MIB)})
        for t in seconds
    ]
    report = load_report.memory_report(
        "postgres", 2, [1, 2], steady, {"create 201": 10}, 300.0, plan.memory_interval
    )
    assert report["flat"] is True
    growing = [(t, {1: int((100 + t / 30) * load_report.MIB)}) for t in seconds]  # 2 MiB a minute
    report = load_report.memory_report("postgres", 1, [1], growing, {}, 300.0, plan.memory_interval)
    assert report["flat"] is False
    workers = report["workers_rss"]
    assert isinstance(workers, list)
    assert workers[0]["slope_mib_per_min"] == pytest.approx(2.0)
    assert load_report.slope_per_minute([(0.0, 1.0)]) == 0.0


def test_targets_judge_the_one_worker_postgres_run_and_sqlites_tail() -> None:
    config = load.ConfigResult("postgres", 1, True)
    config.phases = {
        "bare": {"throughput_rps": 1000.0},
        "create": {"throughput_rps": 130.0},
        "callback": {"throughput_rps": 200.0},
    }
    config.per_operation = {"create": {"cpu_ms": 1.4}, "callback": {"cpu_ms": 0.9}}
    config.latency = {"added_p50_ms": 3.5}
    sqlite = load.ConfigResult("sqlite", 1, False)
    sqlite.phases = {"create": {"p99_ms": 240.0}}
    report = {"configs": [config.as_dict(), sqlite.as_dict()]}
    met = {str(t["target"]): t["met"] for t in load_report.targets(report)}
    assert met == {
        "create: server CPU <= 1.5 ms, PostgreSQL, 1 worker": True,
        "callback: server CPU <= 0.7 ms, PostgreSQL, 1 worker": False,
        "create >= 12 % of bare, PostgreSQL, 1 worker": True,
        "callback >= 25 % of bare, PostgreSQL, 1 worker": False,
        "service adds <= 3 ms p50 over a direct client call (PostgreSQL, 1 w.)": False,
        "SQLite create p99 <= 250 ms (1 worker)": True,
    }


def test_cpu_of_a_process_that_ended_during_a_phase_is_never_negative() -> None:
    readings = iter([{10: 5.0, 11: 2.0}, {10: 6.0, 12: 0.5}])  # 11 ended, 12 started
    meter = load.CpuMeter({"postgres": lambda: next(readings)})
    meter.start()
    used = meter.stop()
    assert used["postgres"] >= 0
    assert set(used) == {"postgres", "generator", "other"}


def test_the_latency_table_shows_what_a_sequential_create_cost_the_server_and_the_database() -> (
    None
):
    config = load.ConfigResult("postgres", 1, True)
    phase = {"throughput_rps": 100.0, "statuses": {}, "connection_errors": 0, "p50_ms": 1.0,
             "p99_ms": 2.0}  # fmt: skip
    config.phases = {name: dict(phase) for name in ("bare", "create", "callback")}
    config.cpu = {name: {} for name in ("bare", "create", "callback")}
    config.latency = {
        "service_p50_ms": 12.5, "service_p99_ms": 20.0, "direct_p50_ms": 2.0,
        "direct_p99_ms": 4.0, "added_p50_ms": 10.5, "server_cpu_ms": 9.87,
        "postgres_cpu_ms": 3.21, "statements": 5.04, "round_trips": 5.04,
    }  # fmt: skip
    report = {
        "machine": {"nproc": 2, "cpu_model": "x", "memory": "1 GiB", "kernel": "6", "python": "3"},
        "command": "paytabs-guard bench load",
        "mode": "quick",
        "when": "now",
        "plan": {
            "concurrency": 16,
            "warmup_seconds": 1,
            "phase_seconds": 2,
            "log_level": "info",
            "malloc_arena_max": 0,
        },
        "configs": [config.as_dict()],
    }
    table = load_report.markdown(report)
    assert "| CPU ms per create: server / PostgreSQL |" in table
    assert (
        "| postgres + Redis | 1 | 12.50 / 20.00 | 2.00 / 4.00 | 10.50 | 9.87 / 3.21 | 5.0 / 5.0 |"
        in table
    )


def test_the_floor_adds_the_pieces_a_create_and_a_callback_cannot_do_without() -> None:
    pieces = {"paytabs_call_ms": 0.5, "sqlalchemy_statement_ms": 0.75, "asyncpg_statement_ms": 0.2}
    found = load_floor.floor(0.25, pieces)
    assert found["create_ms"] == pytest.approx(0.25 + 0.5 + 2 * 0.75)
    assert found["callback_ms"] == pytest.approx(0.25 + 2 * 0.75)
    assert found["create_best_ratio"] == pytest.approx(0.25 / 2.25, abs=1e-4)
    assert found["callback_best_ratio"] == pytest.approx(0.25 / 1.75, abs=1e-4)
    assert "added_latency_ms" not in found  # no sequential request measured: no latency floor


def test_the_floor_counts_statements_as_the_service_sends_them_when_measured() -> None:
    pieces = {"paytabs_call_ms": 0.5, "sqlalchemy_statement_ms": 0.75, "asyncpg_statement_ms": 0.2,
              "direct_statement_ms": 0.4, "sqlalchemy_write_p50_ms": 0.8,
              "direct_write_p50_ms": 0.6, "asyncpg_write_p50_ms": 0.4}  # fmt: skip
    found = load_floor.floor(0.25, pieces, bare_sequential_p50_ms=0.5)
    assert found["create_ms"] == pytest.approx(0.25 + 0.5 + 2 * 0.4)
    assert found["callback_ms"] == pytest.approx(0.25 + 2 * 0.4)
    assert found["added_latency_ms"] == pytest.approx(0.5 + 2 * 0.6)


def test_the_latency_floor_is_the_request_hop_and_two_durable_writes() -> None:
    pieces = {"paytabs_call_ms": 0.5, "sqlalchemy_statement_ms": 0.75, "asyncpg_statement_ms": 0.2,
              "sqlalchemy_write_p50_ms": 0.8, "asyncpg_write_p50_ms": 0.4}  # fmt: skip
    found = load_floor.floor(0.25, pieces, bare_sequential_p50_ms=0.5)
    assert found["added_latency_ms"] == pytest.approx(0.5 + 2 * 0.8)
    assert found["added_latency_raw_ms"] == pytest.approx(0.5 + 2 * 0.4)


async def test_the_wall_p50_is_the_median_step_after_the_warm_up() -> None:
    now = 0.0
    durations = iter([5.0] * 20 + [0.001, 0.002, 0.009] * 110)  # slow warm-up steps, ignored

    def clock() -> float:
        return now

    async def step() -> None:
        nonlocal now
        now += next(durations)

    assert await load_floor.wall_p50_ms(step, 300, clock=clock) == pytest.approx(2.0)


async def test_cpu_per_step_is_taken_over_the_samples_after_a_warm_up() -> None:
    steps = 0

    async def step() -> None:
        nonlocal steps
        steps += 1

    assert await load_floor.cpu_ms(step, 200) >= 0
    assert steps == 20 + 200


def test_the_report_shows_the_floor_against_the_goals() -> None:
    config = load.ConfigResult("postgres", 1, True)
    phase = {"throughput_rps": 100.0, "statuses": {}, "connection_errors": 0, "p50_ms": 1.0,
             "p99_ms": 2.0}  # fmt: skip
    config.phases = {name: dict(phase) for name in ("bare", "create", "callback")}
    config.cpu = {name: {} for name in ("bare", "create", "callback")}
    config.latency = {"service_p50_ms": 1.0, "service_p99_ms": 1.0, "direct_p50_ms": 1.0,
                      "direct_p99_ms": 1.0, "added_p50_ms": 0.0}  # fmt: skip
    config.latency["added_p50_ms"] = 6.5
    pieces = {"paytabs_call_ms": 0.5, "sqlalchemy_statement_ms": 0.75,
              "asyncpg_statement_ms": 0.2, "sqlalchemy_write_p50_ms": 0.9,
              "asyncpg_write_p50_ms": 0.4, "samples": 400}  # fmt: skip
    config.floor = pieces | load_floor.floor(0.25, pieces, bare_sequential_p50_ms=0.45)
    report = {
        "machine": {"nproc": 2, "cpu_model": "x", "memory": "1 GiB", "kernel": "6", "python": "3"},
        "command": "paytabs-guard bench load",
        "mode": "full",
        "when": "now",
        "plan": {
            "concurrency": 16,
            "warmup_seconds": 1,
            "phase_seconds": 2,
            "log_level": "info",
            "malloc_arena_max": 0,
        },
        "configs": [config.as_dict()],
    }
    table = load_report.markdown(report)
    assert (
        "| create floor: request + PayTabs call + 2 statements | 2.250 | 9.0 | 11.1 % (goal 12 %) |"
        in table
    )
    assert "| callback floor: request + 2 statements | 1.750 | 7.0 | 14.3 % (goal 25 %) |" in table
    assert "| the same statement on a raw asyncpg connection | 0.200 | 0.8 |  |" in table
    assert "| added-latency floor: request + 2 writes | 2.250 |" in table
    assert "| the same on raw asyncpg | 1.250 |" in table
    assert "| left for everything else a create does, under the goal | 0.750 |" in table
    assert "| measured: added p50 | 6.500 |" in table
    # Nothing but the service ran (no CPU measured for the rest): it has the machine's 2
    # cores, and the floor's rate of 12 creates for 100 bare requests needs 0.03 of them.
    assert "| operations per second | 12 | 25 |" in table
    assert "| all of them, cores (the machine has 2) | 0.03 | 0.04 |" in table


def test_the_budget_counts_the_cores_each_goals_rate_needs_on_the_machine() -> None:
    config = {
        "phases": {
            "bare": {"throughput_rps": 8000.0},
            "create": {"throughput_rps": 500.0},
            "callback": {"throughput_rps": 1000.0},
        },
        "cpu_cores": {
            "create": {"server": 0.9, "postgres": 0.5, "simulator": 0.2, "generator": 0.05},
            "callback": {"server": 0.9, "postgres": 0.75, "generator": 0.05, "other": 0.3},
        },
        "floor": {"create_ms": 0.6, "callback_ms": 0.4},
    }
    budget = load_report.goal_budget(config, nproc=2)
    create, callback = budget["create"], budget["callback"]
    assert create["rate"] == pytest.approx(0.12 * 8000)  # 960 creates a second
    assert create["postgres_cores"] == pytest.approx(0.5 / 500 * 960)
    assert create["simulator_cores"] == pytest.approx(0.2 / 500 * 960)
    assert create["service_floor_cores"] == pytest.approx(0.6 / 1000 * 960)
    assert create["total_cores"] == pytest.approx((0.75 / 500 + 0.6 / 1000) * 960)
    assert create["left_ms"] == pytest.approx(1000 * (2 - 0.75 / 500 * 960) / 960)
    # At 2,000 callbacks a second PostgreSQL alone needs 1.5 cores; "other" (processes the
    # run does not own) is left out, and what is left for the service is below its floor.
    assert callback["rate"] == pytest.approx(2000)
    assert callback["total_cores"] == pytest.approx(1.5 + 0.1 + 0.8)
    assert callback["left_ms"] == pytest.approx(0.2)
    assert callback["left_ms"] < callback["floor_ms"] == 0.4
    # One worker is one process: however idle the other core, the service gets one core at
    # most. With lighter neighbours (0.38 cores at 960 creates a second) the machine would
    # leave the service 1.68 ms a create; one worker has 1.04 ms, two have the 1.68 ms.
    light = {**config, "cpu_cores": {"create": {"postgres": 0.1, "simulator": 0.1}}}
    machine_left = 1000 * (2 - 0.2 / 500 * 960) / 960
    for workers, left in ((1, 1000 / 960), (2, machine_left), (None, machine_left)):
        budget = load_report.goal_budget({**light, "workers": workers}, nproc=2)
        assert budget["create"]["left_ms"] == pytest.approx(left)
    starved = {**config, "cpu_cores": {"callback": {"postgres": 1.0}, "create": {}}}
    assert load_report.goal_budget(starved, nproc=2)["callback"]["left_ms"] == 0.0
    assert load_report.goal_budget({**config, "floor": {}}, nproc=2) == {}


async def test_the_throwaway_database_keeps_the_urls_query(postgres_url: str) -> None:
    # A URL's query (a Unix socket's host, ssl=, a server setting) must reach the database
    # the benchmark makes; cutting the URL at its last "/" once broke every such URL.
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url).set(query={"application_name": "ptg-bench-url-test"})
    async with load_support.postgres_database(server.render_as_string(False)) as url:
        name = load_support.database_name(url)
        assert name is not None
        assert name.startswith("ptg_bench_")
        connection = await asyncpg.connect(load_support._admin_dsn(url), timeout=5)
        try:
            row = await connection.fetchrow(
                "SELECT current_database(), current_setting('application_name')"
            )
        finally:
            await connection.close()
        assert tuple(row or ()) == (name, "ptg-bench-url-test")
    connection = await asyncpg.connect(load_support._admin_dsn(postgres_url), timeout=5)
    try:
        left = await connection.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", name
        )
    finally:
        await connection.close()
    assert left == 0
