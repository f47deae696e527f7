"""The floor under a create and a callback on this stack, measured in the same run as the load.

What no create or callback can do without, whatever our own code does: the HTTP request
through uvicorn and FastAPI (the bare endpoint's server CPU per request, from the bare phase),
the PayTabs call through the service's own ``PayTabsClient`` (a create only), and two database
statements through SQLAlchemy, each with its pool checkout (the two round trips a create and a
callback take). Each piece is measured here, in the benchmark's own process, with
``time.process_time`` over back-to-back repetitions after a warm-up. The bare endpoint's
request divided by a floor is the largest share of the bare endpoint's throughput the service
could reach if all of its own work (the domain, the relay, logging, metrics) cost nothing.

The same statement on a raw asyncpg connection shows what leaving SQLAlchemy's execute path
would buy.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import asyncpg
from sqlalchemy import Text, bindparam, select

from paytabs_guard.adapters.paytabs.transformers import HostedPageRequest
from paytabs_guard.adapters.sql import create_engine
from paytabs_guard.adapters.sql.engine import single_statement
from paytabs_guard.bootstrap import build_paytabs_client
from paytabs_guard.domain import Money
from paytabs_guard.settings import Settings

STATEMENT_VALUES: Final = 60
"""Bind parameters of the measured statement: about what a callback's commit statement sends."""


async def measure_pieces(
    database_url: str, settings: Settings, *, samples: int
) -> dict[str, float]:
    """CPU milliseconds in this process of one statement through SQLAlchemy (checkout, execute,
    one row, check-in; autocommit as the service sends a create's and a callback's), the same
    statement on one raw asyncpg connection, and one PayTabs ``create_payment_page`` call
    through the service's client (``settings`` point it at the simulator)."""
    statement = select(
        *(bindparam(f"v{n}", type_=Text).label(f"c{n}") for n in range(STATEMENT_VALUES))
    )
    values = {f"v{n}": f"value-{n}" for n in range(STATEMENT_VALUES)}
    engine = create_engine(database_url)
    try:

        async def through_sqlalchemy() -> None:
            async with single_statement(engine) as connection:
                (await connection.execute(statement, values)).one()

        sqlalchemy_ms = await cpu_ms(through_sqlalchemy, samples)
        compiled = statement.compile(dialect=engine.dialect)
        arguments = [values[name] for name in compiled.positiontup or ()]
    finally:
        await engine.dispose()
    raw = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:

        async def through_asyncpg() -> None:
            await raw.fetchrow(compiled.string, *arguments)

        asyncpg_ms = await cpu_ms(through_asyncpg, samples)
    finally:
        await raw.close()
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
        "asyncpg_statement_ms": round(asyncpg_ms, 3),
        "paytabs_call_ms": round(paytabs_ms, 3),
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


def floor(bare_ms: float, pieces: Mapping[str, float]) -> dict[str, float]:
    """The floors in CPU ms, and the largest share of the bare endpoint's throughput each
    allows: a create is the request, the PayTabs call and two statements; a callback the
    request and two statements."""
    statements = 2 * pieces["sqlalchemy_statement_ms"]
    create = bare_ms + pieces["paytabs_call_ms"] + statements
    callback = bare_ms + statements
    return {
        "bare_request_ms": round(bare_ms, 3),
        "create_ms": round(create, 3),
        "callback_ms": round(callback, 3),
        "create_best_ratio": round(bare_ms / create, 4) if create else 0.0,
        "callback_best_ratio": round(bare_ms / callback, 4) if callback else 0.0,
    }
