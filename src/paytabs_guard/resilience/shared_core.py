"""What every part of :class:`~paytabs_guard.resilience.shared.SharedBreakerState` works on:
its connection, the breakers it relays for, the trial leases, what it has seen in Redis, and
whether Redis answers; with the two ways every part talks to Redis without blocking a caller
(a background operation, one pipelined round trip), which keep that reachability up to date.

The parts, each a class on top of this one: ``shared_manual.py`` (operators' manual states),
``shared_listener.py`` (messages and polls from the other instances) and ``shared.py`` (the
lifecycle, the hooks the breakers call, publishing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from paytabs_guard.resilience.breaker import CircuitBreaker
from paytabs_guard.resilience.clock import MonotonicClock
from paytabs_guard.resilience.shared_wire import Keys, Lease, default_instance_id

# One logger for every part: the lines read as the one component they are.
logger = logging.getLogger("paytabs_guard.resilience.shared")


class SharedCore:
    """The state and the Redis primitives of a SharedBreakerState (see ``shared.py``)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "paytabs-guard:",
        instance_id: str | None = None,
        poll_interval: float = 1.0,
        op_timeout: float = 0.5,
        reconnect_delay: float = 1.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self._url = url
        self._keys = Keys(prefix, int(parse_url(url).get("db") or 0))
        self._channel = self._keys.channel
        self.instance_id = instance_id or default_instance_id()
        self._poll_interval = poll_interval
        self._op_timeout = op_timeout
        self._reconnect_delay = reconnect_delay
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._leases: dict[str, Lease] = {}
        self._redis: redis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reachable: bool | None = None
        self._last_error: str | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._synced = asyncio.Event()  # the stored state was read once
        self._closing = False
        self._probe_ok_seen: dict[str, str] = {}
        # The token of the shared manual state each breaker last took from Redis (or put there):
        # a poll that finds another token applies it, one that finds no key resets the breaker
        # (a reset whose message was missed).
        self._manual_seen: dict[str, str] = {}
        # Breakers whose manual state was set here while Redis could not take it: polls leave
        # them alone until the next shared command.
        self._manual_local: set[str] = set()
        # Breakers with a command of ours on its way to Redis: polls leave their manual state
        # alone meanwhile (they would read the state before it).
        self._manual_sending: set[str] = set()

    # -- talking to Redis ----------------------------------------------------------------------

    def _spawn(self, operation: Coroutine[Any, Any, None]) -> bool:
        try:
            task = asyncio.get_running_loop().create_task(operation)
        except RuntimeError:  # no running loop (a snapshot taken from synchronous code)
            operation.close()
            return False
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, queue: Callable[[Pipeline], object]) -> bool:
        """Send the commands ``queue`` adds to a pipeline in one round trip. False when there
        is no connection or it failed (then Redis is marked unreachable)."""
        client = self._redis
        if client is None:
            return False
        try:
            async with asyncio.timeout(self._op_timeout):
                async with client.pipeline(transaction=False) as pipe:
                    queue(pipe)
                    await pipe.execute()
        except Exception as error:
            self._mark_unreachable(error)
            return False
        self._mark_reachable()
        return True

    def _mark_reachable(self) -> None:
        if self._reachable is not True:
            if self._reachable is False:
                logger.info("breaker sharing: Redis reachable again")
            self._reachable = True
            self._down.clear()
            self._up.set()

    def _mark_unreachable(self, error: BaseException) -> None:
        if not isinstance(error, RedisError | OSError | TimeoutError):
            logger.error("breaker sharing: unexpected error", exc_info=error)
        detail = str(error)
        self._last_error = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        if self._reachable is not False:
            logger.warning("breaker sharing: Redis unreachable, using local state (%s)", error)
            self._reachable = False
            # Pending lease requests died with the connection; decide locally from now on.
            self._leases.clear()
            self._up.clear()
            self._down.set()
