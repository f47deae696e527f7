"""A few pooled connections kept checked out for statements sent alone (PostgreSQL).

A statement sent alone (``compiled.py``: a callback's load and commit, both of a create's
commits, the relay's claim and acknowledgement) took a connection from SQLAlchemy's pool and
gave it back around every statement. That checkout and return, each through a greenlet and
the pool's events, cost more CPU than asyncpg takes to send the statement and read its
answer (about 45 µs against 22 µs a statement on the AMD host of docs/benchmarks.md).

The lane keeps up to ``size`` of the pool's connections between such statements and hands
them out one caller at a time, newest first, so a quiet service keeps using one or two. It is
a cache in front of the pool, never a second pool:

* it holds at most ``size`` connections, four of the pool's twenty (never more than a
  quarter: none in a pool of one): transactions always find the rest, and when the lane has
  none free a caller checks one out of the pool as before;
* a connection the lane did not use for ``idle_seconds`` goes back to the pool instead of
  out to a caller, so the pool's ping of an idle connection still comes first;
* a connection whose statement failed or was cancelled goes back to the pool (which
  resets it, or drops it if it was invalidated), never into the lane;
* disposing of the engine closes the connections the lane holds (a test dropping its
  database finds no session left open), and connections in use then go to the pool.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn

from .engine import RETURNED_AT

LANE_SIZE: Final = 4
"""Connections the lane keeps at most: about what one worker has in flight at once."""
LANE_SHARE: Final = 4
"""...and never more than a quarter of the pool (none in a pool under four)."""
LANE_IDLE_SECONDS: Final = 5.0
"""Unused this long, a kept connection goes back to the pool (which pings it after 30 s)."""
LANE_TURN_SECONDS: Final = 600.0
"""Kept this long, a connection goes back to the pool, whose ``pool_recycle`` renews it."""


class Lane:
    """The connections kept for one engine; see the module docstring."""

    def __init__(
        self,
        size: int = LANE_SIZE,
        idle_seconds: float = LANE_IDLE_SECONDS,
        turn_seconds: float = LANE_TURN_SECONDS,
        clock: Callable[[], float] = time.monotonic,  # the pool's idle ping reads this clock
    ) -> None:
        self._clock = clock
        self._size = size
        self._idle_seconds = idle_seconds
        self._turn_seconds = turn_seconds
        # Free ones, newest last: (connection, last used, kept since).
        self._free: list[tuple[PoolProxiedConnection, float, float]] = []
        self._out: dict[PoolProxiedConnection, float] = {}  # handed out: kept since
        self._disposed = False

    @property
    def kept(self) -> int:
        """Connections the lane holds now, free or handed out."""
        return len(self._free) + len(self._out)

    async def take(self, engine: AsyncEngine) -> PoolProxiedConnection:
        """A connection for one statement: a kept one if one is free, else one of the pool's."""
        now = self._clock()
        while self._free:
            connection, used_at, since = self._free.pop()
            fresh = now - used_at < self._idle_seconds and now - since < self._turn_seconds
            if fresh and connection.is_valid:
                self._out[connection] = since
                return connection
            await _to_the_pool(connection, used_at)
        connection = await engine.raw_connection()
        if not self._disposed and self.kept < self._size:
            self._out[connection] = now
        return connection

    async def give_back(self, connection: PoolProxiedConnection, *, healthy: bool) -> None:
        """After the statement: into the lane when it is one of the lane's and ``healthy``
        (the statement ran to its end), else back to the pool."""
        since = self._out.pop(connection, None)
        if since is not None and healthy and not self._disposed and connection.is_valid:
            self._free.append((connection, self._clock(), since))
            return
        await greenlet_spawn(connection.close)

    def _close_kept(self) -> None:
        """On the engine's disposal (inside its greenlet): close what the lane holds free."""
        self._disposed = True
        free, self._free = self._free, []
        for connection, _used_at, _since in free:
            connection.invalidate()  # closes the driver's connection now; the pool is gone


async def _to_the_pool(connection: PoolProxiedConnection, used_at: float) -> None:
    """Give a kept connection back to the pool as having waited since ``used_at``, so the
    pool's idle ping (``engine.py``) counts the time it sat in the lane."""
    info = connection.info  # the pool's record of the connection: outlives the checkout
    await greenlet_spawn(connection.close)
    info[RETURNED_AT] = used_at


_LANES: weakref.WeakKeyDictionary[Any, Lane] = weakref.WeakKeyDictionary()


def lane_of(engine: AsyncEngine) -> Lane:
    """The lane of ``engine`` (one per engine, whatever execution options it was given)."""
    sync_engine = engine.sync_engine
    pool = sync_engine.pool
    lane = _LANES.get(pool)
    if lane is None:
        size = getattr(pool, "size", lambda: 0)()  # a QueuePool's; other pools keep none
        lane = _LANES[pool] = Lane(size=min(LANE_SIZE, size // LANE_SHARE))
        event.listen(sync_engine, "engine_disposed", lambda _engine: lane._close_kept())
    return lane
