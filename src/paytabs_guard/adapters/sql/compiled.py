"""Statements compiled once per dialect, and sent past SQLAlchemy's execute where it costs most.

SQLAlchemy's ``execute`` builds an execution context, looks the statement up in its cache,
binds the values, dispatches events, hands the driver call to a greenlet and wraps the rows in
a result: about 0.2 ms of CPU per statement here, more than asyncpg takes to send it and read
the answer. Two places skip it:

* ``BatchedWrites`` (SQLite) sends a commit's statements to aiosqlite's thread in one hand-off;
* ``CombinedWrites`` (PostgreSQL) sends a commit's one statement on the asyncpg connection
  itself when that statement runs alone, in autocommit (both of a create's commits and a
  callback's): :func:`fetch_one_alone`;
* a payment looked up without its lock before anything else in the unit of work (a
  callback's load, ``GET`` of a payment) on PostgreSQL, and the relay's fan-out, claim and
  acknowledgement there (each one statement on its own): :func:`fetch_all_alone`.

Both need what :func:`compiled_for` keeps: the SQL text, the parameters' names in order, and
each one's bind processing, exactly as SQLAlchemy's execute applies it. Errors come out as
SQLAlchemy's own (``IntegrityError``, ``OperationalError``…), a lost connection is
invalidated as SQLAlchemy would, and the statement is counted for the budget
(``statements.sent_together``).
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from .lane import lane_of
from .statements import sent_together

Row = Mapping[str, Any]

MAX_SHAPES: Final = 256
"""Statements kept per dialect; past that, each further one is compiled on every use."""


class CompiledSql(NamedTuple):
    """A statement compiled for one dialect: its text, and per positional parameter its name
    and the column type's bind processing (None: the value goes as it is). ``constants``: the
    values of the parameters the statement carries itself (a literal in a ``WHERE``).
    ``results``: per column it returns, its key and the type's result processing."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    constants: Mapping[str, Any]
    results: tuple[tuple[str, Callable[[Any], Any] | None], ...] = ()
    binder: Callable[[Row], tuple[Any, ...]] | None = None  # built by compiled_for

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """A returned row by column key, each value processed as SQLAlchemy's result would."""
        return {
            key: value if process is None else process(value)
            for (key, process), value in zip(self.results, values, strict=True)
        }

    def bind(self, values: Row) -> tuple[Any, ...]:
        """The positional arguments for ``values``, each processed as its column's type says."""
        if self.constants:
            values = {**self.constants, **values}
        binder = self.binder or _binder(self.names, self.processors)
        return binder(values)


def _binder(
    names: tuple[str, ...], processors: tuple[Callable[[Any], Any] | None, ...]
) -> Callable[[Row], tuple[Any, ...]]:
    """What :meth:`CompiledSql.bind` runs for one statement, built once: one C-level lookup of
    every value, then only the few types that process their values (a commit's statement
    carries about 65 values, and two generators over them cost more than sending them)."""
    processed = tuple(
        (index, process) for index, process in enumerate(processors) if process is not None
    )

    def values_of(values: Row) -> tuple[Any, ...]:
        return tuple(values[name] for name in names)

    pick = operator.itemgetter(*names) if len(names) > 1 else values_of
    if not processed:
        return pick

    def bound(values: Row) -> tuple[Any, ...]:
        arguments = list(pick(values))
        for index, process in processed:
            arguments[index] = process(arguments[index])
        return tuple(arguments)

    return bound


_COMPILED: weakref.WeakKeyDictionary[Dialect, dict[tuple[Any, tuple[str, ...]], CompiledSql]] = (
    weakref.WeakKeyDictionary()
)


def compiled_for(dialect: Dialect, statement: Any, columns: tuple[str, ...] = ()) -> CompiledSql:
    """``statement`` compiled once per dialect and set of value names (an INSERT's or
    UPDATE's columns are the names given; the rest are its bind parameters)."""
    cache = _COMPILED.get(dialect)
    if cache is None:
        cache = _COMPILED[dialect] = {}
    found = cache.get((statement, columns))
    if found is not None:
        return found
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(columns))
    if compiled.insert_prefetch or compiled.update_prefetch:
        # A Python-side column default would be computed by SQLAlchemy's execute, not here.
        raise ValueError(f"column defaults computed in Python are not sent this way: {compiled}")
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise ValueError(f"parameters rendered at execution are not sent this way: {compiled}")
    names = tuple(compiled.positiontup)
    # ``dialect_impl``: the type as this dialect runs it (a TypeDecorator's own processing
    # wrapped around the dialect's, as SQLAlchemy's execute applies it).
    processors = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    constants = {
        name: compiled.binds[name].effective_value
        for name in names
        if name not in columns and compiled.binds[name].value is not None
    }
    # The driver's own codecs already ran (asyncpg decodes JSON with the dialect's codec);
    # what is left is the types' Python-side processing (a TypeDecorator's
    # ``process_result_value``), as SQLAlchemy's result applies it.
    results = tuple(
        (column[0], column[3]._cached_result_processor(dialect, None))
        for column in getattr(compiled, "_result_columns", ())
    )
    found = CompiledSql(
        compiled.string, names, processors, constants, results, _binder(names, processors)
    )
    if len(cache) < MAX_SHAPES:
        cache[(statement, columns)] = found
    return found


async def fetch_one_alone(engine: AsyncEngine, statement: Any, values: Row) -> Sequence[Any]:
    """The one row ``statement`` returns, sent on its own (autocommit: the statement is its own
    transaction) on an asyncpg connection taken from ``engine``'s pool (:func:`_alone`). The
    values come as the driver gives them (a commit's statement returns counts and ids)."""
    compiled = compiled_for(engine.dialect, statement)
    rows = await _alone(engine, compiled, compiled.bind(values), one=True)
    if not rows:
        raise RuntimeError(f"the statement returned no row: {compiled.sql[:80]}")
    return tuple(rows[0])


async def fetch_all_alone(
    engine: AsyncEngine, statement: Any, values: Row, columns: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The rows ``statement`` returns, by column key and processed as SQLAlchemy's result
    would, sent on its own like :func:`fetch_one_alone` (a read that locks nothing, or one
    statement that is its own transaction). ``columns``: the columns an UPDATE sets from
    ``values``. Only for a statement built once and reused: each one is compiled once and
    kept (``MAX_SHAPES``)."""
    compiled = compiled_for(engine.dialect, statement, columns)
    return [compiled.row(row) for row in await _alone(engine, compiled, compiled.bind(values))]


async def _alone(
    engine: AsyncEngine, compiled: CompiledSql, arguments: tuple[Any, ...], *, one: bool = False
) -> list[Sequence[Any]]:
    """Send one statement in autocommit on a connection of ``engine``'s pool, kept between
    statements by its lane (``lane.py``); with ``one``, read only its first row (asyncpg's
    ``fetchrow``, as the benchmark's floor measures it).

    The connection is the pool's, without SQLAlchemy's ``Connection`` around it: that wrapper
    (its autocommit characteristics set on checkout and reset on return, its transaction
    events) cost three times the pool's own checkout. The pool's checkout events still run
    (the ping of a connection that sat idle), and nothing opens a transaction on it, so
    asyncpg sends the statement in autocommit and the pool's reset on return sends nothing."""
    lane = lane_of(engine)
    fairy = await lane.take(engine)
    healthy = False
    try:
        driver: Any = fairy.driver_connection  # asyncpg.Connection
        sent_together(engine, [(compiled.sql, False)])
        try:
            if one:
                row = await driver.fetchrow(compiled.sql, *arguments)
                rows: list[Sequence[Any]] = [] if row is None else [row]
            else:
                rows = await driver.fetch(compiled.sql, *arguments)
        except Exception as error:
            raise _as_sqlalchemy_error(engine, fairy, compiled.sql, arguments, error) from error
        healthy = True
    finally:
        await lane.give_back(fairy, healthy=healthy)  # kept, or back to the pool
    return rows


def _as_sqlalchemy_error(
    engine: AsyncEngine,
    fairy: PoolProxiedConnection,
    sql: str,
    arguments: tuple[Any, ...],
    error: Exception,
) -> Exception:
    """The error SQLAlchemy's execute would have raised for ``error``: asyncpg's exception
    translated by SQLAlchemy's own adapter, wrapped as ``sqlalchemy.exc.DBAPIError``'s
    subclass, or ``error`` itself when it is no database error (a timeout); on a lost
    connection the connection is invalidated first, so the pool opens a new one instead of
    handing this one out again."""
    adapted: Any = fairy.dbapi_connection
    dialect = engine.dialect
    dbapi_error: Any = error
    try:
        adapted._handle_exception(error)  # always raises: the DB-API translation
    except Exception as translated:
        dbapi_error = translated
    if not isinstance(dbapi_error, dialect.loaded_dbapi.Error):
        # Not the database's answer: asyncpg's command timeout (a server that cannot be
        # heard), a socket error. SQLAlchemy's execute raises those as they are, and so the
        # API answers them as the database being unavailable (503), not as a 500 from a
        # StatementError around them. The connection is not used again: a statement may
        # still be running on it, or it is gone.
        fairy.invalidate(error)
        return error
    invalidated = dialect.is_disconnect(dbapi_error, adapted, None)
    if invalidated:
        fairy.invalidate(dbapi_error)
    wrapped: Exception = DBAPIError.instance(
        sql,
        arguments,
        dbapi_error,
        dialect.loaded_dbapi.Error,
        hide_parameters=engine.sync_engine.hide_parameters,
        connection_invalidated=invalidated,
        dialect=dialect,
    )
    return wrapped
