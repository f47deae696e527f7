"""The floor under a create and a callback on this stack, measured in the same run as the load.

What no create or callback can do without, whatever our own code does: the HTTP request
through uvicorn and FastAPI (the bare endpoint's server CPU per request, from the bare phase),
the PayTabs call through the service's own ``PayTabsClient`` (a create only), and two database
statements sent as the service sends a commit that runs alone: a connection from SQLAlchemy's
pool, and the statement on that asyncpg connection itself (``adapters/sql/compiled.py``);
these are the two round trips a create and a callback take. Each piece is measured here, in
the benchmark's own process, with ``time.process_time`` over back-to-back repetitions after a
warm-up. The bare endpoint's request divided by a floor is the largest share of the bare
endpoint's throughput the service could reach if all of its own work (the domain, the relay,
logging, metrics) cost nothing.

Two more ways to send the same statement are measured beside it: through SQLAlchemy's execute
(how the service sent its commits before), and on a raw asyncpg connection without a pool.

The latency the service adds over a direct PayTabs call has a floor of its own, in wall-clock
time: the HTTP hop to the service (a sequential request to the bare endpoint, from the same
client) and the two writes a create must see durable before it goes on, one before the PayTabs
call and one after (a row of 60 values inserted, sent as the service sends a commit, which
waits for the WAL flush). The PayTabs call itself is in both the service's time and the direct
call's, so it cancels out.
"""

from __future__ import annotations

import itertools
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import asyncpg
from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    MetaData,
    Table,
    Text,
    bindparam,
    insert,
    select,
)

from paytabs_guard.adapters.paytabs.transformers import HostedPageRequest
from paytabs_guard.adapters.sql import create_engine
from paytabs_guard.adapters.sql.compiled import fetch_one_alone
from paytabs_guard.adapters.sql.engine import single_statement
from paytabs_guard.bootstrap import build_paytabs_client
from paytabs_guard.domain import Money
from paytabs_guard.settings import Settings

STATEMENT_VALUES: Final = 60
"""Bind parameters of the measured statement: about what a callback's commit statement sends."""

_scratch = MetaData()
WRITES: Final = Table(
    "bench_floor_writes",
    _scratch,
    Column("id", BigInteger, Identity(), primary_key=True),
    *(Column(f"c{n}", Text) for n in range(STATEMENT_VALUES)),
)
"""Where the durable writes go: made in the run's throw-away database, dropped after."""


async def measure_pieces(
    database_url: str, settings: Settings, *, samples: int
) -> dict[str, float]:
    """CPU milliseconds in this process of one statement (checkout, 60 values, one row,
    check-in, autocommit) as the service sends a commit, through SQLAlchemy's execute, and on
    one raw asyncpg connection; of one PayTabs ``create_payment_page`` call through the
    service's client (``settings`` point it at the simulator); and the wall-clock p50 of a
    durable write (an insert, committed) the same three ways."""
    statement = select(
        *(bindparam(f"v{n}", type_=Text).label(f"c{n}") for n in range(STATEMENT_VALUES))
    )
    values = {f"v{n}": f"value-{n}" for n in range(STATEMENT_VALUES)}
    write = insert(WRITES).values(
        {f"c{n}": bindparam(f"v{n}", type_=Text) for n in range(STATEMENT_VALUES)}
    )
    write_returning = write.returning(WRITES.c.id)
    engine = create_engine(database_url)
    raw = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_scratch.create_all)

        async def through_sqlalchemy() -> None:
            async with single_statement(engine) as connection:
                (await connection.execute(statement, values)).one()

        async def durable_write() -> None:
            async with single_statement(engine) as connection:
                await connection.execute(write, values)

        async def as_the_service_sends_it() -> None:
            await fetch_one_alone(engine, statement, values)

        async def durable_write_as_the_service_sends_it() -> None:
            await fetch_one_alone(engine, write_returning, values)

        sqlalchemy_ms = await cpu_ms(through_sqlalchemy, samples)
        write_p50 = await wall_p50_ms(durable_write, samples)
        direct_ms = await cpu_ms(as_the_service_sends_it, samples)
        direct_write_p50 = await wall_p50_ms(durable_write_as_the_service_sends_it, samples)

        compiled = statement.compile(dialect=engine.dialect)
        arguments = [values[name] for name in compiled.positiontup or ()]
        write_compiled = write.compile(dialect=engine.dialect)
        write_arguments = [values[name] for name in write_compiled.positiontup or ()]

        async def through_asyncpg() -> None:
            await raw.fetchrow(compiled.string, *arguments)

        async def raw_write() -> None:
            await raw.execute(write_compiled.string, *write_arguments)

        asyncpg_ms = await cpu_ms(through_asyncpg, samples)
        raw_write_p50 = await wall_p50_ms(raw_write, samples)
    finally:
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_scratch.drop_all)
        finally:
            await raw.close()
            await engine.dispose()
    client = build_paytabs_client(settings)
    prefix = secrets.token_hex(4)
    numbers = itertools.count()
    try:

        async def paytabs_call() -> None:
            page = HostedPageRequest(
                cart_id=f"floor-{prefix}-{next(numbers)}",
                amount=Money.of("100.00", "SAR"),
                description="Load test order",
                callback_url="http://127.0.0.1:9/payments/v2/webhook",
                return_url="http://127.0.0.1:9/payments/v2/return",
                paypage_ttl_minutes=20,
            )
            await client.create_payment_page(page)

        paytabs_ms = await cpu_ms(paytabs_call, samples)
    finally:
        await client.aclose()
    return {
        "sqlalchemy_statement_ms": round(sqlalchemy_ms, 3),
        "direct_statement_ms": round(direct_ms, 3),
        "asyncpg_statement_ms": round(asyncpg_ms, 3),
        "paytabs_call_ms": round(paytabs_ms, 3),
        "sqlalchemy_write_p50_ms": round(write_p50, 3),
        "direct_write_p50_ms": round(direct_write_p50, 3),
        "asyncpg_write_p50_ms": round(raw_write_p50, 3),
        "samples": samples,
    }


async def cpu_ms(step: Callable[[], Awaitable[None]], samples: int) -> float:
    """This process's CPU milliseconds per ``step``, over ``samples`` after a warm-up."""
    for _ in range(max(5, samples // 10)):
        await step()
    started = time.process_time()
    for _ in range(samples):
        await step()
    return 1000 * (time.process_time() - started) / samples


async def wall_p50_ms(
    step: Callable[[], Awaitable[None]],
    samples: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The median wall-clock milliseconds of ``step``, one after another, after a warm-up."""
    for _ in range(max(5, samples // 10)):
        await step()
    times = []
    for _ in range(samples):
        started = clock()
        await step()
        times.append(1000 * (clock() - started))
    return statistics.median(times)


def floor(
    bare_ms: float, pieces: Mapping[str, float], bare_sequential_p50_ms: float | None = None
) -> dict[str, float]:
    """The floors in CPU ms, and the largest share of the bare endpoint's throughput each
    allows: a create is the request, the PayTabs call and two statements; a callback the
    request and two statements. With the bare endpoint's sequential p50, also the floor under
    the latency a create adds over a direct PayTabs call: the request's hop and two durable
    writes, in wall-clock time."""
    # As the service sends a commit when measured (SQLAlchemy's checkout, asyncpg's fetchrow:
    # compiled.py), else through SQLAlchemy's execute (reports from before that path).
    statement = pieces.get("direct_statement_ms", pieces["sqlalchemy_statement_ms"])
    statements = 2 * statement
    create = bare_ms + pieces["paytabs_call_ms"] + statements
    callback = bare_ms + statements
    found = {
        "bare_request_ms": round(bare_ms, 3),
        "create_ms": round(create, 3),
        "callback_ms": round(callback, 3),
        "create_best_ratio": round(bare_ms / create, 4) if create else 0.0,
        "callback_best_ratio": round(bare_ms / callback, 4) if callback else 0.0,
    }
    write_p50 = pieces.get("direct_write_p50_ms", pieces.get("sqlalchemy_write_p50_ms"))
    if bare_sequential_p50_ms is not None and write_p50 is not None:
        found["bare_sequential_p50_ms"] = round(bare_sequential_p50_ms, 3)
        found["added_latency_ms"] = round(bare_sequential_p50_ms + 2 * write_p50, 3)
        raw_write = pieces.get("asyncpg_write_p50_ms")
        if raw_write is not None:
            found["added_latency_raw_ms"] = round(bare_sequential_p50_ms + 2 * raw_write, 3)
    return found
