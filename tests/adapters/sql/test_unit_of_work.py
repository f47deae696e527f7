"""The unit of work: one transaction for state, inbox and outbox; locks; optimistic versions."""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from paytabs_guard.adapters.sql import (
    ConcurrentUpdate,
    SqlIdempotencyStore,
    create_engine,
    purge_inbox,
    sql_unit_of_work_factory,
    upgrade,
)
from paytabs_guard.adapters.sql.sqlite_driver import BatchStatementFailed
from paytabs_guard.adapters.sql.unit_of_work import _refusal
from paytabs_guard.adapters.sql.write_health import DatabaseReadOnly
from paytabs_guard.domain import OutcomeKind, Payment, PaymentState, Trigger
from paytabs_guard.domain.errors import RefundNotAllowed
from paytabs_guard.service.ports import (
    ClaimStatus,
    DeliverySeen,
    IdempotencyClaim,
    KeyTaken,
    StoredResponse,
    UnitOfWorkFactory,
)

from .builders import (
    A,
    D,
    applied,
    at,
    awaiting,
    count,
    fixed_clock,
    new_payment,
    outbox_types,
    result,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """Raised inside a unit of work to leave it early."""


async def test_twenty_concurrent_deliveries_of_one_callback_apply_it_once(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    payment = awaiting("pay_race")
    async with uow() as unit:
        unit.payments.add(payment)
        await unit.commit()
    callback = result(payment, A)
    outcomes: list[OutcomeKind] = []
    new_deliveries: list[bool] = []

    async def deliver() -> None:
        async with uow() as unit:
            loaded = await unit.payments.get("pay_race", for_update=True)
            assert loaded is not None
            outcomes.append(loaded.apply_gateway_result(callback, at=at(3)).kind)
            new_deliveries.append(
                await unit.inbox.record("paytabs:TST-cart-pay_race:A", source="callback", now=at(3))
            )
            await unit.commit()

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(deliver)

    assert sorted(outcomes) == sorted([OutcomeKind.APPLIED] + [OutcomeKind.DUPLICATE] * 19)
    assert new_deliveries.count(True) == 1
    async with uow() as unit:
        stored = await unit.payments.get("pay_race")
    assert stored is not None
    assert stored.state is PaymentState.COMPLETED
    assert [entry.trigger for entry in stored.history].count(Trigger.CHARGED) == 1
    assert stored.version == 2  # saved once by the first delivery only
    types = await outbox_types(engine, "pay_race")
    assert types.count("payment.completed") == 1
    assert await count(engine, "webhook_inbox") == 1


async def test_a_stale_copy_of_a_payment_is_refused_with_concurrent_update(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    await _store_awaiting(uow, "pay_stale")
    async with uow() as unit:
        stale = await unit.payments.get("pay_stale")
    assert stale is not None
    async with uow() as unit:
        fresh = await unit.payments.get("pay_stale", for_update=True)
        assert fresh is not None
        applied(fresh.apply_gateway_result(result(fresh, A), at=at(3)))
        await unit.commit()
    applied(stale.apply_gateway_result(result(stale, D), at=at(4)))
    with pytest.raises(ConcurrentUpdate) as raised:
        await _save(uow, stale)  # re-attached: saved only if still at the version it was read at
    assert raised.value.payment_id == "pay_stale"
    assert raised.value.expected_version == 1
    assert [event.type for event in stale.pending_events] == ["payment.failed"]  # kept
    async with uow() as unit:
        stored = await unit.payments.get("pay_stale")
    assert stored is not None
    assert stored.state is PaymentState.COMPLETED
    assert "payment.failed" not in await outbox_types(engine, "pay_stale")


async def test_a_stale_copy_saved_with_an_idempotency_answer_stores_neither(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    # A unit of work that reads nothing and writes one payment sends its commit on PostgreSQL
    # as one statement without BEGIN/COMMIT: the stale version must keep every write of it out.
    stale = awaiting("pay_stale_key")
    await _save(uow, stale)  # committed from this object: saving it again reads nothing first
    store = SqlIdempotencyStore(engine)
    claim = await store.claim("scope", "key-1", "fp", now=at(1), ttl_seconds=86400)
    assert claim == IdempotencyClaim(ClaimStatus.NEW)
    async with uow() as unit:
        fresh = await unit.payments.get("pay_stale_key", for_update=True)
        assert fresh is not None
        applied(fresh.apply_gateway_result(result(fresh, A), at=at(3)))
        await unit.commit()
    applied(stale.apply_gateway_result(result(stale, D), at=at(4)))
    answer = StoredResponse(status_code=200, body="{}", resource_id="pay_stale_key")
    async with uow() as unit:
        unit.payments.add(stale)
        await unit.idempotency.complete("scope", "key-1", answer, now=at(4))
        with pytest.raises(ConcurrentUpdate):
            await unit.commit()
    assert "payment.failed" not in await outbox_types(engine, "pay_stale_key")
    # The key was not answered: a retry still finds it in flight.
    again = await store.claim("scope", "key-1", "fp", now=at(2), ttl_seconds=86400)
    assert again == IdempotencyClaim(ClaimStatus.IN_FLIGHT)


async def test_a_payment_loaded_earlier_and_still_current_can_be_saved_later(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    await _store_awaiting(uow, "pay_later")
    async with uow() as unit:
        payment = await unit.payments.get("pay_later")
    assert payment is not None
    applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
    async with uow() as unit:
        unit.payments.add(payment)
        await unit.commit()
    assert payment.version == 2
    assert payment.pending_events == []
    assert (await outbox_types(engine, "pay_later"))[-1] == "payment.completed"


@pytest.mark.postgres
async def test_two_writers_without_a_lock_lose_the_race_loudly_on_postgres(
    postgres_uow: UnitOfWorkFactory,
) -> None:
    # On SQLite this cannot happen: every unit of work holds the write lock from its first read.
    uow = postgres_uow
    await _store_awaiting(uow, "pay_both")
    first_read = anyio.Event()
    second_read = anyio.Event()
    first_done = anyio.Event()

    async def first() -> None:
        async with uow() as unit:
            payment = await unit.payments.get("pay_both")
            assert payment is not None
            first_read.set()
            await second_read.wait()
            applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
            await unit.commit()
        first_done.set()

    async def second() -> None:
        await first_read.wait()
        async with uow() as unit:
            payment = await unit.payments.get("pay_both")  # no lock: the same version as first
            assert payment is not None
            second_read.set()
            await first_done.wait()
            applied(payment.apply_gateway_result(result(payment, D), at=at(4)))
            with pytest.raises(ConcurrentUpdate):
                await unit.commit()

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(second)
    async with uow() as unit:
        stored = await unit.payments.get("pay_both")
    assert stored is not None
    assert stored.state is PaymentState.COMPLETED
    assert stored.conflicts == []


async def test_leaving_without_commit_or_on_an_error_writes_nothing(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    await _store_awaiting(uow, "pay_keep")

    async def fail_halfway() -> None:
        async with uow() as unit:
            unit.payments.add(new_payment("pay_never"))
            payment = await unit.payments.get("pay_keep", for_update=True)
            assert payment is not None
            applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
            assert await unit.inbox.record("delivery-1", source="callback", now=at(3))
            raise Boom

    with pytest.raises(Boom):
        await fail_halfway()
    async with uow() as unit:
        payment = await unit.payments.get("pay_keep", for_update=True)
        assert payment is not None
        applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
        # no commit: rolled back on exit
    async with uow() as unit:
        assert await unit.payments.get("pay_never") is None
        stored = await unit.payments.get("pay_keep")
        assert stored is not None
        assert stored.state is PaymentState.AWAITING_CUSTOMER
        assert stored.version == 1
        # The delivery was not marked seen: its retry is processed.
        assert await unit.inbox.record("delivery-1", source="callback", now=at(5))
    assert await count(engine, "webhook_inbox") == 0
    assert await outbox_types(engine, "pay_keep") == ["payment.created", "payment.initiated"]
    assert await outbox_types(engine, "pay_never") == []


async def test_a_failed_commit_writes_nothing_of_the_unit_of_work(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    await _store_awaiting(uow, "pay_first")
    duplicate_cart = new_payment("pay_dup", cart_id="cart-pay_first")
    with pytest.raises(IntegrityError):
        await _save(uow, new_payment("pay_fine"), duplicate_cart)
    async with uow() as unit:
        assert await unit.payments.get("pay_fine") is None
    assert await outbox_types(engine, "pay_fine") == []
    assert [event.type for event in duplicate_cart.pending_events] == ["payment.created"]


async def test_the_inbox_says_new_once_per_key_across_units_of_work(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    async with uow() as unit:
        assert await unit.inbox.record("k1", source="callback", now=at(0))
        assert not await unit.inbox.record("k1", source="callback", now=at(0))
        await unit.commit()
    async with uow() as unit:
        assert not await unit.inbox.record("k1", source="query", now=at(1))
        assert await unit.inbox.record("k2", source="query", now=at(1))
        await unit.commit()
    assert await purge_inbox(engine, received_before=at(1)) == 1
    async with uow() as unit:
        assert await unit.inbox.record("k1", source="callback", now=at(2))
        await unit.commit()


async def test_a_delivery_recorded_with_the_commit_writes_once_and_its_repeat_writes_nothing(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    await _store_awaiting(uow, "pay_once")
    async with uow() as unit:
        payment = await unit.payments.get("pay_once")  # no lock: the version check guards it
        assert payment is not None
        applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
        await unit.inbox.record_with_commit("delivery-9", source="callback", now=at(3))
        await unit.commit()
    assert await count(engine, "webhook_inbox") == 1

    async def deliver_again() -> None:
        async with uow() as unit:
            payment = await unit.payments.get("pay_once")
            assert payment is not None
            # a contradicting result would record a conflict note and an event: not for a
            # delivery seen before
            outcome = payment.apply_gateway_result(result(payment, D), at=at(4))
            assert outcome.kind is OutcomeKind.CONFLICT
            await unit.inbox.record_with_commit("delivery-9", source="callback", now=at(4))
            await unit.commit()

    with pytest.raises(DeliverySeen) as seen:
        await deliver_again()
    assert seen.value.key == "delivery-9"
    async with uow() as unit:
        stored = await unit.payments.get("pay_once")
    assert stored is not None
    assert stored.state is PaymentState.COMPLETED
    assert stored.conflicts == []
    assert stored.version == 2
    assert "payment.conflict" not in await outbox_types(engine, "pay_once")
    assert await count(engine, "webhook_inbox") == 1


async def test_a_delivery_recorded_with_the_commit_of_nothing_else_is_recorded_alone(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    async with uow() as unit:
        await unit.inbox.record_with_commit("delivery-10", source="query", now=at(1))
        await unit.commit()
    assert await count(engine, "webhook_inbox") == 1

    async def record_again() -> None:
        async with uow() as unit:
            await unit.inbox.record_with_commit("delivery-10", source="query", now=at(2))
            await unit.commit()

    with pytest.raises(DeliverySeen):
        await record_again()
    async with uow() as unit:
        assert not await unit.inbox.record("delivery-10", source="callback", now=at(2))


async def test_a_stale_version_with_a_delivery_writes_neither_and_reports_the_version(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    # On PostgreSQL the read goes without a transaction and the commit is one statement on its
    # own: the dedupe row must not be written when the payment's version check fails, or the
    # delivery would be "seen" without its effect and its retry dropped.
    await _store_awaiting(uow, "pay_moved")
    async with uow() as unit:
        stale = await unit.payments.get("pay_moved")
    assert stale is not None
    async with uow() as unit:
        fresh = await unit.payments.get("pay_moved", for_update=True)
        assert fresh is not None
        applied(fresh.apply_gateway_result(result(fresh, D), at=at(2)))
        await unit.commit()

    async def deliver_to_the_stale_copy() -> None:
        async with uow() as unit:
            unit.payments.add(stale)
            applied(stale.apply_gateway_result(result(stale, A), at=at(3)))
            await unit.inbox.record_with_commit("delivery-11", source="callback", now=at(3))
            await unit.commit()

    with pytest.raises(ConcurrentUpdate):
        await deliver_to_the_stale_copy()
    assert await count(engine, "webhook_inbox") == 0
    assert "payment.completed" not in await outbox_types(engine, "pay_moved")


@pytest.mark.postgres
async def test_an_unlocked_read_then_a_delivery_loses_to_a_writer_in_between_on_postgres(
    postgres_engine: AsyncEngine, postgres_uow: UnitOfWorkFactory
) -> None:
    uow = postgres_uow
    await _store_awaiting(uow, "pay_between")
    read = anyio.Event()
    written = anyio.Event()

    async def callback() -> None:
        async with uow() as unit:
            payment = await unit.payments.get("pay_between")  # on its own, no transaction
            assert payment is not None
            read.set()
            await written.wait()
            applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
            await unit.inbox.record_with_commit("delivery-12", source="callback", now=at(3))
            with pytest.raises(ConcurrentUpdate):
                await unit.commit()

    async def writer() -> None:
        await read.wait()
        async with uow() as unit:
            payment = await unit.payments.get("pay_between", for_update=True)
            assert payment is not None
            applied(payment.apply_gateway_result(result(payment, D), at=at(2)))
            await unit.commit()
        written.set()

    async with anyio.create_task_group() as group:
        group.start_soon(callback)
        group.start_soon(writer)
    assert await count(postgres_engine, "webhook_inbox") == 0
    assert await outbox_types(postgres_engine, "pay_between") == [
        "payment.created",
        "payment.initiated",
        "payment.failed",
    ]


@pytest.mark.postgres
async def test_a_commit_sent_past_sqlalchemy_on_a_lost_connection_fails_once_then_reconnects(
    postgres_url: str,
) -> None:
    # A create's commit goes on the asyncpg connection itself (compiled.py). When its
    # connection was cut, the error must be SQLAlchemy's, the connection invalidated (not
    # handed out again by the pool), and the next commit must get a new one.
    await upgrade(postgres_url)
    engine = create_engine(postgres_url, pool_size=1, idle_ping_seconds=3600)
    admin = create_engine(postgres_url)
    try:
        uow = sql_unit_of_work_factory(engine, clock=fixed_clock)
        await _store_awaiting(uow, "pay_before_the_cut")
        async with engine.connect() as connection:
            cut_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with admin.connect() as killer:
            await killer.execute(text(f"SELECT pg_terminate_backend({cut_pid})"))
        with pytest.raises(DBAPIError) as failed:
            await _store_awaiting(uow, "pay_on_the_cut")
        assert failed.value.connection_invalidated
        await _store_awaiting(uow, "pay_after_the_cut")
        async with engine.connect() as connection:
            new_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with uow() as unit:
            assert await unit.payments.get("pay_on_the_cut") is None
            assert await unit.payments.get("pay_after_the_cut") is not None
    finally:
        await engine.dispose()
        await admin.dispose()
    assert new_pid != cut_pid


async def _until_a_statement_waits_for_a_lock(engine: AsyncEngine) -> None:
    """Return once a backend of this database waits for a lock (PostgreSQL's own view)."""
    with anyio.fail_after(10):
        while True:
            async with engine.connect() as connection:
                waiting = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
            await anyio.sleep(0.01)  # PostgreSQL's state, not a clock of ours: poll it


@pytest.mark.postgres
async def test_a_commit_cancelled_while_it_waits_for_a_lock_leaves_a_usable_pool(
    postgres_url: str,
) -> None:
    # A create's or a callback's commit goes on a pooled asyncpg connection (compiled.py).
    # Cancelled while PostgreSQL runs it (the request timed out), that connection must not
    # go back to the pool with the statement still running: the next commit, on the pool's
    # only connection, would fail with "another operation is in progress".
    await upgrade(postgres_url)
    engine = create_engine(postgres_url, pool_size=1, idle_ping_seconds=3600)
    admin = create_engine(postgres_url)
    try:
        uow = sql_unit_of_work_factory(engine, clock=fixed_clock)
        await _store_awaiting(uow, "pay_waits")
        async with uow() as unit:
            before = await unit.payments.get("pay_waits")
        assert before is not None

        async def complete_it() -> None:
            async with uow() as unit:
                payment = await unit.payments.get("pay_waits")  # no lock: the commit checks
                assert payment is not None
                applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
                await unit.commit()

        async with admin.connect() as blocker:
            await blocker.begin()
            await blocker.execute(text("SELECT id FROM payments WHERE id = 'pay_waits' FOR UPDATE"))
            async with anyio.create_task_group() as group:
                waiting = anyio.CancelScope()

                async def commit_that_waits() -> None:
                    with waiting:
                        await complete_it()

                group.start_soon(commit_that_waits)
                await _until_a_statement_waits_for_a_lock(admin)
                waiting.cancel()
            await blocker.rollback()
        assert waiting.cancelled_caught
        with anyio.fail_after(10):  # the pool's one connection serves the next units of work
            await _store_awaiting(uow, "pay_after_the_cancel")
            async with uow() as unit:
                stored = await unit.payments.get("pay_waits")
        # PostgreSQL had the statement: it ran once the lock was gone, or was cancelled with
        # the request, all or nothing either way (asyncpg asks the server to cancel it).
        assert stored is not None
        if stored.state is PaymentState.AWAITING_CUSTOMER:
            await complete_it()
        else:
            assert stored.state is PaymentState.COMPLETED
            assert stored.version == before.version + 1  # applied once
    finally:
        await engine.dispose()
        await admin.dispose()


@pytest.mark.postgres
async def test_a_pool_of_one_serves_a_read_then_a_lock_and_outlives_a_cancelled_read_on_postgres(
    postgres_url: str,
) -> None:
    # One connection in the pool: a unit of work that reads without a lock and then locks must
    # not hold the read's connection while it waits for the transaction's, or it would wait
    # for itself for ever; a cancelled one must give its connection back.
    await upgrade(postgres_url)
    engine = create_engine(postgres_url, pool_size=1)
    try:
        uow = sql_unit_of_work_factory(engine, clock=fixed_clock)
        await _store_awaiting(uow, "pay_small_pool")
        with anyio.fail_after(20):
            async with uow() as unit:
                assert await unit.payments.get("pay_small_pool") is not None
                locked = await unit.payments.get("pay_small_pool", for_update=True)
                assert locked is not None
                applied(locked.apply_gateway_result(result(locked, A), at=at(3)))
                await unit.commit()
            with anyio.CancelScope() as scope:
                async with uow() as unit:
                    assert await unit.payments.get("pay_small_pool") is not None
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()  # cancelled here, inside the unit of work
            async with uow() as unit:  # its connection must be back for this one
                stored = await unit.payments.get("pay_small_pool")
        assert stored is not None
        assert stored.state is PaymentState.COMPLETED
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.checkedout() == 0
    finally:
        await engine.dispose()


async def test_twenty_concurrent_unlocked_deliveries_with_the_commit_apply_it_once(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    await _store_awaiting(uow, "pay_many")
    ends: list[str] = []

    async def deliver() -> None:
        try:
            async with uow() as unit:
                payment = await unit.payments.get("pay_many")
                assert payment is not None
                payment.apply_gateway_result(result(payment, A), at=at(3))
                await unit.inbox.record_with_commit("delivery-13", source="callback", now=at(3))
                await unit.commit()
            ends.append("committed")
        except DeliverySeen:
            ends.append("seen")
        except ConcurrentUpdate:
            ends.append("stale")

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(deliver)
    assert ends.count("committed") == 1
    assert len(ends) == 20
    async with uow() as unit:
        stored = await unit.payments.get("pay_many")
    assert stored is not None
    assert stored.state is PaymentState.COMPLETED
    assert stored.version == 2
    assert (await outbox_types(engine, "pay_many")).count("payment.completed") == 1
    assert await count(engine, "webhook_inbox") == 1


async def test_one_object_per_payment_within_a_unit_of_work(uow: UnitOfWorkFactory) -> None:
    await _store_awaiting(uow, "pay_one")
    async with uow() as unit:
        first = await unit.payments.get("pay_one")
        again = await unit.payments.get("pay_one", for_update=True)
        by_ref = await unit.payments.get_by_tran_ref("TST-cart-pay_one")
        listed = await unit.payments.list()
    assert first is not None
    assert first is again is by_ref is listed[0]


@pytest.mark.postgres
async def test_stuck_payments_claimed_by_two_reconcilers_are_disjoint_on_postgres(
    postgres_uow: UnitOfWorkFactory,
) -> None:
    # SKIP LOCKED is PostgreSQL's; on SQLite the second reconciler waits for the first.
    uow = postgres_uow
    for minute in range(4):
        await _store_awaiting(uow, f"pay_s{minute}", minute=minute)
    undecided = [PaymentState.AWAITING_CUSTOMER]
    claimed: dict[str, list[str]] = {}
    first_claimed = anyio.Event()
    second_claimed = anyio.Event()

    async def reconcile(name: str, go: anyio.Event | None, done: anyio.Event) -> None:
        if go is not None:
            await go.wait()
        async with uow() as unit:
            ids = await unit.payments.stuck(undecided, updated_before=at(100), limit=2)
            claimed[name] = list(ids)
            done.set()
            await second_claimed.wait()  # both hold their claims at the same time

    async with anyio.create_task_group() as group:
        group.start_soon(reconcile, "one", None, first_claimed)
        group.start_soon(reconcile, "two", first_claimed, second_claimed)
    assert claimed == {"one": ["pay_s0", "pay_s1"], "two": ["pay_s2", "pay_s3"]}


async def test_nothing_to_save_touches_no_row(engine: AsyncEngine, uow: UnitOfWorkFactory) -> None:
    await _store_awaiting(uow, "pay_same")
    async with uow() as unit:
        payment = await unit.payments.get("pay_same", for_update=True)
        assert payment is not None
        outcome = payment.apply_gateway_result(result(payment, None), at=at(3))
        assert outcome.kind is OutcomeKind.DUPLICATE
        await unit.commit()
    assert payment.version == 1
    assert fixed_clock() == at(1000)


async def _save(uow: UnitOfWorkFactory, *payments: Payment) -> None:
    async with uow() as unit:
        for payment in payments:
            unit.payments.add(payment)
        await unit.commit()


async def _store_awaiting(uow: UnitOfWorkFactory, payment_id: str, *, minute: int = 0) -> None:
    await _save(uow, awaiting(payment_id, created=at(minute)))


async def test_a_cancelled_unit_of_work_gives_its_lock_back(uow: UnitOfWorkFactory) -> None:
    # A request cancelled mid-way (client gone, timeout) must not keep the row lock, or on SQLite
    # the database's write lock, until the garbage collector finds its connection.
    await _store_awaiting(uow, "pay_cancel")
    with anyio.CancelScope() as scope:
        async with uow() as unit:
            payment = await unit.payments.get("pay_cancel", for_update=True)
            assert payment is not None
            applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
            scope.cancel()
            await anyio.lowlevel.checkpoint()
            await unit.commit()
    assert scope.cancelled_caught
    async with uow() as unit:
        again = await unit.payments.get("pay_cancel", for_update=True)
        assert again is not None
        assert again.state is PaymentState.AWAITING_CUSTOMER


async def _refuse_outbox_inserts(engine: AsyncEngine) -> None:
    """A trigger that makes every outbox insert fail, as a full disk or a bad row would."""
    async with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql(
                "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
                "BEGIN SELECT RAISE(ABORT, 'outbox refuses'); END"
            )
        else:
            await connection.exec_driver_sql(
                "CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'outbox refuses'; END $$"
            )
            await connection.exec_driver_sql(
                "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
                "FOR EACH ROW EXECUTE FUNCTION refuse_outbox()"
            )


async def test_a_failed_outbox_write_rolls_the_state_change_back(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    # One transaction, not two: if the event cannot be written, the change that caused it is
    # not kept either (a change without its event would never be published).
    await _store_awaiting(uow, "pay_atomic")
    await _refuse_outbox_inserts(engine)

    async def change_and_commit() -> None:
        async with uow() as unit:
            payment = await unit.payments.get("pay_atomic", for_update=True)
            assert payment is not None
            applied(payment.apply_gateway_result(result(payment, A), at=at(3)))
            assert await unit.inbox.record("delivery-9", source="callback", now=at(3))
            unit.payments.add(new_payment("pay_new_too"))
            await unit.commit()

    with pytest.raises(DBAPIError, match="outbox refuses"):
        await change_and_commit()
    async with uow() as unit:
        stored = await unit.payments.get("pay_atomic")
        assert stored is not None
        assert (stored.state, stored.version) == (PaymentState.AWAITING_CUSTOMER, 1)
        assert stored.pending_events == []
        assert await unit.payments.get("pay_new_too") is None
    assert await count(engine, "webhook_inbox") == 0
    assert await outbox_types(engine, "pay_atomic") == ["payment.created", "payment.initiated"]


async def test_a_commit_reuses_compiled_statements(engine: AsyncEngine) -> None:
    # A statement SQLAlchemy cannot cache (a multi-row .values([...]), for one) is compiled
    # anew on every commit: CPU on the request path for nothing.
    uow = sql_unit_of_work_factory(engine, clock=fixed_clock)
    misses: list[str] = []

    def on_execute(
        _conn: object, _cursor: object, statement: str, _p: object, context: Any, _m: bool
    ) -> None:
        if context.cache_hit != context.dialect.CACHE_HIT and not statement.startswith("BEGIN"):
            misses.append(statement[:60])

    async def save_and_change(payment_id: str) -> None:
        async with uow() as work:
            work.payments.add(awaiting(payment_id))
            await work.commit()
        async with uow() as work:
            payment = await work.payments.get(payment_id, for_update=True)
            assert payment is not None
            payment.apply_gateway_result(result(payment, A), at=at(5))
            await work.commit()

    await save_and_change("pay_warm")
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        await save_and_change("pay_cached")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    assert misses == []


# ---- an idempotency claim sent with the commit (a create's first unit of work) ----------------

ANSWER = StoredResponse(status_code=201, body='{"id": "pay_first"}', resource_id="pay_first")


@pytest.mark.parametrize(
    ("fingerprint", "answered", "expected"),
    [
        ("fp", True, IdempotencyClaim(ClaimStatus.COMPLETED, ANSWER)),
        ("fp", False, IdempotencyClaim(ClaimStatus.IN_FLIGHT)),
        ("other-body", True, IdempotencyClaim(ClaimStatus.MISMATCH)),
    ],
)
async def test_a_claim_with_the_commit_on_a_taken_key_writes_nothing_and_says_what_it_holds(
    engine: AsyncEngine,
    uow: UnitOfWorkFactory,
    fingerprint: str,
    answered: bool,
    expected: IdempotencyClaim,
) -> None:
    store = SqlIdempotencyStore(engine)
    assert await store.claim("create", "key-7", "fp", now=at(1), ttl_seconds=86400) == (
        IdempotencyClaim(ClaimStatus.NEW)
    )
    if answered:
        await store.complete("create", "key-7", ANSWER, now=at(1))

    async def create() -> None:
        async with uow() as unit:  # SQLite claims at once, PostgreSQL with the commit
            await unit.idempotency.claim_with_commit(
                "create", "key-7", fingerprint, now=at(2), ttl_seconds=86400
            )
            unit.payments.add(new_payment("pay_second"))
            await unit.commit()

    with pytest.raises(KeyTaken) as taken:
        await create()
    assert taken.value.claim == expected
    assert await count(engine, "payments") == 0
    assert await outbox_types(engine, "pay_second") == []
    # the key is as it was: its owner's answer (or its flight) stands
    again = await store.claim("create", "key-7", "fp", now=at(2), ttl_seconds=86400)
    assert again.status is (ClaimStatus.COMPLETED if answered else ClaimStatus.IN_FLIGHT)


async def test_a_claim_with_the_commit_never_takes_over_a_key_whose_request_died(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    # In flight for an hour: its request died, maybe after PayTabs acted on it.
    store = SqlIdempotencyStore(engine)
    await store.claim("create", "key-10", "fp", now=at(0), ttl_seconds=86400)

    async def rerun() -> None:
        async with uow() as unit:
            await unit.idempotency.claim_with_commit(
                "create", "key-10", "fp", now=at(60), ttl_seconds=86400
            )
            unit.payments.add(new_payment("pay_rerun"))
            await unit.commit()

    with pytest.raises(KeyTaken) as taken:
        await rerun()
    assert taken.value.claim == IdempotencyClaim(ClaimStatus.INTERRUPTED)
    assert await count(engine, "payments") == 0


async def test_a_claim_with_the_commit_takes_over_an_expired_key_and_writes_everything(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    store = SqlIdempotencyStore(engine)
    await store.claim("create", "key-8", "old", now=at(0), ttl_seconds=86400)
    await store.complete("create", "key-8", ANSWER, now=at(0))
    a_day_later = at(24 * 60 + 1)
    async with uow() as unit:
        await unit.idempotency.claim_with_commit(
            "create", "key-8", "new", now=a_day_later, ttl_seconds=86400
        )
        unit.payments.add(new_payment("pay_new"))
        await unit.commit()
    assert await count(engine, "payments") == 1
    assert await outbox_types(engine, "pay_new") == ["payment.created"]
    # the key is now this request's, in flight, under its own fingerprint
    mine = await store.claim("create", "key-8", "new", now=a_day_later, ttl_seconds=86400)
    assert mine == IdempotencyClaim(ClaimStatus.IN_FLIGHT)
    theirs = await store.claim("create", "key-8", "old", now=a_day_later, ttl_seconds=86400)
    assert theirs == IdempotencyClaim(ClaimStatus.MISMATCH)


async def test_of_concurrent_claims_with_the_commit_one_writes_and_the_others_hear_in_flight(
    engine: AsyncEngine, uow: UnitOfWorkFactory
) -> None:
    outcomes: list[str] = []

    async def create(n: int) -> None:
        try:
            async with uow() as unit:
                await unit.idempotency.claim_with_commit(
                    "create", "key-9", "fp", now=at(1), ttl_seconds=86400
                )
                unit.payments.add(new_payment(f"pay_race_{n}"))
                await unit.commit()
            outcomes.append("created")
        except KeyTaken as taken:
            outcomes.append(taken.claim.status.value)

    async with anyio.create_task_group() as group:
        for n in range(8):
            group.start_soon(create, n)
    assert sorted(outcomes) == ["created", *["in_flight"] * 7]
    assert await count(engine, "payments") == 1


def test_only_the_service_s_own_decisions_end_a_unit_of_work_without_an_error_span() -> None:
    """A trace's error status is for failures: a replayed key or a refused refund is a decision,
    while the database failing stays an error even where one of our classes wraps it."""
    assert _refusal(KeyTaken(IdempotencyClaim(ClaimStatus.IN_FLIGHT)))
    assert _refusal(RefundNotAllowed("pay_1", "pending"))
    assert _refusal(ConcurrentUpdate("pay_1", 2))
    assert not _refusal(DatabaseReadOnly("INSERT", {}, Exception("read-only")))
    assert not _refusal(BatchStatementFailed(1, sqlite3.OperationalError("disk I/O error")))
    assert not _refusal(TimeoutError())
    assert not _refusal(TypeError("a bug"))
    assert not _refusal(None)
