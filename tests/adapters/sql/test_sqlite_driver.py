"""The SQLite driver: one hand-off to aiosqlite's thread per statement, and otherwise the
DB-API SQLAlchemy expects (rows, counts, errors, transactions) on a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from paytabs_guard.adapters.sql import create_engine
from paytabs_guard.adapters.sql.sqlite_driver import (
    BatchStatement,
    BatchStatementFailed,
    OneTripConnection,
    one_trip_connector,
)
from paytabs_guard.adapters.sql.statements import counting

pytestmark = pytest.mark.anyio


class _HandOffs:
    """Counts the calls a connection hands to its thread (aiosqlite's ``_execute``, through
    which every one goes: statements, commit, rollback)."""

    def __init__(self, driver: OneTripConnection) -> None:
        self.count = 0
        handing_off: Any = driver._execute

        def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return handing_off(function, *args, **kwargs)

        driver._execute = counted  # type: ignore[method-assign,assignment]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}", pool_size=1)
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)"
        )
    yield engine
    await engine.dispose()


async def _driver(connection: AsyncConnection) -> OneTripConnection:
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, OneTripConnection)
    return driver


def _open(driver: OneTripConnection) -> bool:
    """Whether the connection is in a transaction (a call, so each read is a new one)."""
    return bool(driver.in_transaction)


async def test_each_statement_is_one_hand_off_to_the_thread(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        hand_offs = _HandOffs(await _driver(connection))
        with counting(engine) as counts:
            await connection.execute(text("INSERT INTO items (name) VALUES ('a'), ('b')"))
            await connection.execute(
                text("INSERT INTO items (name) VALUES (:name)"), [{"name": "c"}, {"name": "d"}]
            )
            names = (await connection.execute(text("SELECT name FROM items ORDER BY id"))).all()
            await connection.commit()
    assert [n for (n,) in names] == ["a", "b", "c", "d"]
    # Three statements (BEGIN IMMEDIATE goes with the first) and COMMIT: four round trips,
    # four hand-offs (aiosqlite's own cursors took three or four per statement: open,
    # execute, fetch, close; BEGIN took one of its own).
    assert counts.round_trips == 4
    assert hand_offs.count == 4


async def test_rows_counts_and_last_row_id_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(text("INSERT INTO items (name) VALUES ('x')"))
        assert inserted.lastrowid == 1
        await connection.execute(
            text("INSERT INTO items (name) VALUES (:name)"),
            [{"name": f"n{i}"} for i in range(999)],
        )
        updated = await connection.execute(text("UPDATE items SET name = name || '!'"))
        assert updated.rowcount == 1000
        nothing = await connection.execute(text("UPDATE items SET name = 'y' WHERE id < 0"))
        assert nothing.rowcount == 0
        result = await connection.execute(text("SELECT id, name FROM items ORDER BY id"))
        assert result.keys() == ["id", "name"]
        first = result.fetchone()
        assert first is not None
        assert tuple(first) == (1, "x!")
        assert [tuple(r) for r in result.fetchmany(2)] == [(2, "n0!"), (3, "n1!")]
        rest = result.fetchall()
        assert len(rest) == 997
        assert tuple(rest[-1]) == (1000, "n998!")
        assert result.fetchone() is None
        assert await connection.scalar(text("SELECT count(*) FROM items WHERE id > 1000")) == 0


async def test_a_failed_statement_raises_the_usual_error_and_the_connection_goes_on(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("INSERT INTO items (name) VALUES ('same')"))
        with pytest.raises(IntegrityError, match="UNIQUE"):
            await connection.execute(text("INSERT INTO items (name) VALUES ('same')"))
        with pytest.raises(OperationalError, match="no such table"):
            await connection.execute(text("SELECT * FROM nowhere"))
        await connection.rollback()
        await connection.execute(text("INSERT INTO items (name) VALUES ('after')"))
        await connection.commit()
    async with engine.connect() as connection:
        names = (await connection.execute(text("SELECT name FROM items"))).scalars().all()
    assert names == ["after"]  # the rollback took 'same' with it


async def test_a_rolled_back_transaction_leaves_nothing(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("INSERT INTO items (name) VALUES ('gone')"))
        await connection.rollback()
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM items")) == 0


async def test_statements_of_concurrent_connections_keep_their_own_results(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'many.db'}", pool_size=4)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
            await connection.exec_driver_sql(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 50)"
                " INSERT INTO t (n) SELECT n FROM s"
            )

        async def read(low: int) -> list[int]:
            async with engine.connect() as connection:
                found = []
                for _ in range(20):
                    rows = await connection.execute(
                        text("SELECT n FROM t WHERE n BETWEEN :low AND :high ORDER BY n"),
                        {"low": low, "high": low + 2},
                    )
                    found = list(rows.scalars())
                    await asyncio.sleep(0)
                return found

        results = await asyncio.gather(*(read(low) for low in (1, 10, 20, 30)))
    finally:
        await engine.dispose()
    assert results == [[1, 2, 3], [10, 11, 12], [20, 21, 22], [30, 31, 32]]


async def test_begin_goes_with_the_first_statement_and_takes_the_write_lock_first(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}"
    holder = create_engine(url, pool_size=1)
    other = create_engine(url, pool_size=1, lock_timeout_seconds=0.2)
    try:
        async with holder.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        async with holder.connect() as connection:
            driver = await _driver(connection)
            hand_offs = _HandOffs(driver)
            await connection.begin()
            assert hand_offs.count == 0
            assert not _open(driver)  # nothing sent yet
            await connection.execute(text("SELECT count(*) FROM t"))
            # One hand-off ran BEGIN IMMEDIATE and the read: this connection holds the
            # database's write lock although it only read.
            assert hand_offs.count == 1
            assert _open(driver)
            async with other.connect() as second:
                await second.begin()
                with pytest.raises(OperationalError, match="database is locked"):
                    # Even a read waits: its BEGIN IMMEDIATE runs before it.
                    await second.execute(text("SELECT count(*) FROM t"))
                await second.rollback()
            await connection.commit()
            assert hand_offs.count == 2
        async with other.begin() as second:  # the lock is free again
            await second.execute(text("INSERT INTO t (n) VALUES (1)"))
    finally:
        await holder.dispose()
        await other.dispose()


async def test_a_transaction_that_ran_nothing_costs_no_hand_off(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        hand_offs = _HandOffs(await _driver(connection))
        with counting(engine) as counts:
            await connection.begin()
            await connection.commit()
            await connection.begin()
            await connection.rollback()
    assert hand_offs.count == 0
    assert counts.round_trips == 0, counts.describe()


async def test_a_batch_is_one_hand_off_and_stops_at_a_version_check_that_misses(
    engine: AsyncEngine,
) -> None:
    insert = "INSERT INTO items (id, name) VALUES (?, ?)"
    async with engine.connect() as connection:
        driver = await _driver(connection)
        hand_offs = _HandOffs(driver)
        await connection.begin()  # pending: it goes with the batch
        stopped = await driver.run_batch(
            [
                BatchStatement(insert, (1, "one")),
                BatchStatement(insert, [(2, "two"), (3, "three")], many=True),
                BatchStatement("UPDATE items SET name = 'uno' WHERE id = ?", (1,), expect_one=True),
                BatchStatement("UPDATE items SET name = 'x' WHERE id = ?", (99,), expect_one=True),
                BatchStatement(insert, (4, "never")),
            ]
        )
        assert stopped == 3  # the update of a missing row: the insert after it did not run
        assert hand_offs.count == 1
        names = (await connection.execute(text("SELECT name FROM items ORDER BY id"))).scalars()
        assert list(names) == ["uno", "two", "three"]
        assert await driver.run_batch([BatchStatement(insert, (5, "five"))]) == -1
        await connection.commit()
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM items")) == 4


async def test_a_failing_batch_statement_says_which_and_rolls_back_with_the_rest(
    engine: AsyncEngine,
) -> None:
    insert = "INSERT INTO items (name) VALUES (?)"
    async with engine.connect() as connection:
        driver = await _driver(connection)
        await connection.begin()
        with pytest.raises(BatchStatementFailed) as failed:
            await driver.run_batch(
                [
                    BatchStatement(insert, ("a",)),
                    BatchStatement(insert, ("a",)),  # UNIQUE
                    BatchStatement(insert, ("b",)),
                ]
            )
        assert failed.value.index == 1
        assert isinstance(failed.value.error, sqlite3.IntegrityError)
        assert _open(driver)  # the first insert ran, in the transaction
        await connection.rollback()
        await connection.execute(text("INSERT INTO items (name) VALUES ('after')"))
        await connection.commit()
    async with engine.connect() as connection:
        names = (await connection.execute(text("SELECT name FROM items"))).scalars().all()
    assert names == ["after"]


async def test_a_close_that_a_force_close_overtook_still_returns(tmp_path: Path) -> None:
    # SQLAlchemy closes a connection gracefully and, when that wait is cancelled, force-closes
    # it (stop) while the graceful close is still queued. The thread ends on the first stop;
    # the close, resumed, must not wait for a second stop that no thread will ever answer.
    connection = await one_trip_connector((str(tmp_path / "close.db"),), {})()
    closing = asyncio.ensure_future(connection.close())
    await asyncio.sleep(0)  # the graceful close hands its close to the thread
    stopping = connection.stop()
    async with asyncio.timeout(10):
        await closing
        assert stopping is not None
        await stopping
    assert connection._connection is None
    assert connection.stop() is None  # asked once, answered once


async def test_prepare_runs_on_the_new_connection_and_a_failing_one_fails_the_open(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "prepared.db")
    connection = await one_trip_connector(
        (path,), {}, prepare=lambda raw: raw.execute("PRAGMA user_version = 7")
    )()
    try:
        assert await connection.on_thread(
            lambda: connection.raw.execute("PRAGMA user_version").fetchone()
        ) == (7,)
    finally:
        await connection.close()

    def refuse(_: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("not today")

    with pytest.raises(sqlite3.OperationalError, match="not today"):
        await one_trip_connector((path,), {}, prepare=refuse)()
