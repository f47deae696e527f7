"""SQLite's batched commit writes (``batched_writes.BatchedWrites``): what they store, byte
for byte, is what SQLAlchemy's own ``execute`` stores for the same values; and a commit is two
hand-offs.

The batch compiles its statements and binds the values itself (the columns' types do the
conversion: times as fixed-width text, JSON as text), so it could drift from SQLAlchemy's
execute without any read noticing, until a comparison of stored text (ordering by time, the
page cursor) goes wrong. Each table a commit writes is copied here, row by row, through
SQLAlchemy's execute into a second database, and the two files' stored values are compared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from paytabs_guard.adapters.sql import (
    SqlIdempotencyStore,
    create_engine,
    sql_unit_of_work_factory,
    upgrade,
)
from paytabs_guard.adapters.sql.batched_writes import BatchedWrites
from paytabs_guard.adapters.sql.sqlite_driver import OneTripConnection
from paytabs_guard.adapters.sql.statements import counting
from paytabs_guard.adapters.sql.tables import (
    gateway_transactions,
    idempotency_keys,
    outbox,
    payment_cart_ids,
    payment_conflicts,
    payment_transitions,
    payments,
)
from paytabs_guard.service.ports import ClaimStatus, StoredResponse

from .builders import (
    A,
    applied,
    at,
    awaiting,
    completed_sale,
    fixed_clock,
    kwd_auth_captured_refunded,
    new_payment,
    refund_in_flight,
    result,
    with_abandoned_cart,
    with_conflict,
)

pytestmark = pytest.mark.anyio

WRITTEN = (
    payments,
    payment_cart_ids,
    payment_transitions,
    gateway_transactions,
    payment_conflicts,
    outbox,
    idempotency_keys,
)


async def _migrated(path: Path) -> AsyncEngine:
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    return create_engine(url)


@pytest.fixture
async def batched(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _migrated(tmp_path / "batched.db")
    yield engine
    await engine.dispose()


@pytest.fixture
async def executed(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _migrated(tmp_path / "executed.db")
    yield engine
    await engine.dispose()


async def _stored_text(engine: AsyncEngine, table: Any) -> list[tuple[Any, ...]]:
    """Every row as SQLite stores it: ``quote()`` of each column (type and bytes both show)."""
    columns = ", ".join(f'quote("{c.name}")' for c in table.columns)
    key = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            f"SELECT {columns} FROM {table.name} ORDER BY {key}"  # noqa: S608 - our own tables
        )
        return [tuple(row) for row in rows]


async def test_the_batch_stores_what_sqlalchemys_execute_stores(
    batched: AsyncEngine, executed: AsyncEngine
) -> None:
    uow = sql_unit_of_work_factory(batched, clock=fixed_clock)
    # Inserts of payments of every shape (times, money, JSON metadata, follow-ups and a hold,
    # conflicts, abandoned carts), each with its events. (The KWD follow-up shape is left out:
    # it shares its follow-ups' transaction refs with the refund in flight.)
    async with uow() as unit:
        for payment in (
            new_payment("pay_new"),
            completed_sale("pay_done"),
            with_conflict(),
            refund_in_flight(),
            with_abandoned_cart(),
            awaiting("pay_page"),
        ):
            unit.payments.add(payment)
        await unit.commit()
    # Updates (the payment row, a gateway transaction) and an idempotency answer.
    store = SqlIdempotencyStore(batched)
    await store.claim("scope", "key-1", "fp", now=at(1), ttl_seconds=86400)
    async with uow() as unit:
        page = await unit.payments.get("pay_page", for_update=True)
        assert page is not None
        applied(page.apply_gateway_result(result(page, A), at=at(3)))
        answer = StoredResponse(status_code=201, body='{"id":"pay_page"}', resource_id="pay_page")
        await unit.idempotency.complete("scope", "key-1", answer, now=at(3))
        await unit.commit()

    for table in WRITTEN:
        async with batched.connect() as connection:
            rows = [dict(row._mapping) for row in await connection.execute(select(table))]
        assert rows, f"the commits above wrote nothing to {table.name}"
        async with executed.begin() as connection:
            await connection.execute(table.insert(), rows)
        assert await _stored_text(batched, table) == await _stored_text(executed, table), table.name


async def test_a_commit_is_one_hand_off(batched: AsyncEngine) -> None:
    uow = sql_unit_of_work_factory(batched, clock=fixed_clock)
    async with uow() as unit:
        unit.payments.add(awaiting("pay_warm"))
        await unit.commit()
    hand_offs = 0
    original: Any = OneTripConnection._execute

    def counted(self: OneTripConnection, function: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hand_offs
        hand_offs += 1
        return original(self, function, *args, **kwargs)

    OneTripConnection._execute = counted  # type: ignore[method-assign,assignment]
    try:
        with counting(batched) as counts:
            async with uow() as unit:
                # A payment, its cart id, its history and its event, then COMMIT.
                unit.payments.add(awaiting("pay_counted"))
                await unit.commit()
    finally:
        OneTripConnection._execute = original  # type: ignore[method-assign]
    assert counts.statements >= 4, counts.describe()
    # BEGIN IMMEDIATE, every write and COMMIT: one hand-off.
    assert hand_offs == 1
    assert counts.round_trips == 1, counts.describe()
    async with batched.connect() as connection:
        assert (
            await connection.scalar(text("SELECT count(*) FROM payments WHERE id = 'pay_counted'"))
            == 1
        )


async def test_a_batch_deletes_only_the_named_transactions_of_its_payment(
    batched: AsyncEngine,
) -> None:
    # A new attempt drops the abandoned page's record (repository._write_transactions).
    uow = sql_unit_of_work_factory(batched, clock=fixed_clock)
    async with uow() as unit:
        unit.payments.add(completed_sale("pay_keep"))
        unit.payments.add(kwd_auth_captured_refunded("pay_drop"))
        await unit.commit()
    async with batched.connect() as connection:
        refs = (
            (
                await connection.execute(
                    select(gateway_transactions.c.tran_ref)
                    .where(gateway_transactions.c.payment_id == "pay_drop")
                    .order_by(gateway_transactions.c.seq)
                )
            )
            .scalars()
            .all()
        )
    assert len(refs) >= 3
    kept_before = await _stored_text(batched, gateway_transactions)
    async with batched.connect() as connection:
        await connection.begin()
        writes = BatchedWrites(connection)
        await writes.delete_transactions("pay_drop", [refs[0], refs[2], "TST-not-there"])
        await writes.delete_transactions("pay_keep", [refs[1]])  # not this payment's: no row
        await writes.finish(commit=True)
    async with batched.connect() as connection:
        left = (
            await connection.execute(
                select(gateway_transactions.c.payment_id, gateway_transactions.c.tran_ref)
            )
        ).all()
    assert sorted(ref for pid, ref in left if pid == "pay_drop") == sorted([refs[1], *refs[3:]])
    assert len(kept_before) - len(left) == 2


async def test_a_claim_in_the_batch_stores_what_the_stores_own_claim_stores(
    batched: AsyncEngine, executed: AsyncEngine
) -> None:
    """The claim at the head of a create's batch (``claim_with_commit``) against the same
    claim sent through SQLAlchemy's execute: a new key, and an expired one taken over."""
    uow = sql_unit_of_work_factory(batched, clock=fixed_clock)
    store = SqlIdempotencyStore(executed)
    day = 24 * 60
    for engine in (batched, executed):  # an old answered key, expired by the time of the claims
        old = SqlIdempotencyStore(engine)
        await old.claim("create", "old-key", "old", now=at(0), ttl_seconds=86400)
        answer = StoredResponse(status_code=201, body='{"id":"pay_0"}', resource_id="pay_0")
        await old.complete("create", "old-key", answer, now=at(0))
    for n, key in enumerate(("new-key", "old-key")):
        async with uow() as unit:
            await unit.idempotency.claim_with_commit(
                "create", key, f"fp-{n}", now=at(day + 1.5), ttl_seconds=86400
            )
            unit.payments.add(new_payment(f"pay_claim_{n}"))
            await unit.commit()
        claim = await store.claim("create", key, f"fp-{n}", now=at(day + 1.5), ttl_seconds=86400)
        assert claim.status is ClaimStatus.NEW
    stored = await _stored_text(batched, idempotency_keys)
    assert len(stored) == 2
    assert stored == await _stored_text(executed, idempotency_keys)
